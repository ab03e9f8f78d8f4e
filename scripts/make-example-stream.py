#!/usr/bin/env python3
"""Writes streams/examples/rotation.jsonl and rotation-teachers.jsonl: the demo's teacher rotation.

Two teacher versions score every request. For the first 5 minutes of event time they agree (a stable stretch in
which nothing must fire); then teacher v2 is retrained and its soft labels shift, so KL(v2 || v1) rises far past
0.05 and `teacher_kl_drift` must fire once. The served student keeps imitating v1. Deterministic (seeded).
"""
import json, math, random

random.seed(20261123)
START = 1795430000000          # event time of the first sample, ms
SECONDS, PER_SECOND, CHANGE_AT = 600, 10, 300
CLASSES, FEATURES = 4, 4
W = [[random.gauss(0, 1) for _ in range(FEATURES)] for _ in range(CLASSES)]   # the teacher's function of features
SHIFT = [1.5, -1.5, 0.0, 0.0]

def r(x):
    return float(f"{x:.4f}")

with open("streams/examples/rotation.jsonl", "w") as out:
    for i in range(SECONDS * PER_SECOND):
        ts = START + i * 1000 // PER_SECOND
        x = [random.gauss(0, 1) for _ in range(FEATURES)]
        clean = [2 * sum(w * v for w, v in zip(row, x)) for row in W]
        z = [c + random.gauss(0, 0.3) for c in clean]
        v2 = [a + b for a, b in zip(z, SHIFT)] if (ts - START) >= CHANGE_AT * 1000 else z
        student = [a + random.gauss(0, 0.4) for a in z]
        sample = {"id": f"req-{i:06d}", "ts": ts, "features": [r(v) for v in x],
                  "teachers": [{"version": "distilbert-v1", "logits": [r(v) for v in z]},
                               {"version": "distilbert-v2", "logits": [r(v) for v in v2]}],
                  "student": {"version": "tinybert-s1", "logits": [r(v) for v in student]},
                  "slice": "canary" if i % 10 == 0 else "main"}
        if i % 2 == 0:
            noisy = [c + random.gauss(0, 0.8) for c in clean]      # labels are noisier than the teacher
            sample["label"] = max(range(CLASSES), key=lambda k: noisy[k])
        out.write(json.dumps(sample, separators=(",", ":")) + "\n")

teachers = [
    {"version": "distilbert-v1", "major": 1, "created_at": START - 86_400_000, "accuracy": 0.93, "ece": 0.02,
     "temperature": 1.0, "data_hash": "sha256:demo-v1", "status": "active"},
    {"version": "distilbert-v2", "major": 1, "created_at": START - 3_600_000, "accuracy": 0.932, "ece": 0.021,
     "temperature": 1.0, "data_hash": "sha256:demo-v2", "status": "active"},
]
with open("streams/examples/rotation-teachers.jsonl", "w") as out:
    for t in teachers:
        out.write(json.dumps(t, separators=(",", ":")) + "\n")
