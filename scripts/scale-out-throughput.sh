#!/usr/bin/env bash
# Scale-out throughput on this machine: N distilld instances (scale_out.enabled) in one consumer group over the
# embedded broker, for N = 1 and 2 (INSTANCES="1 2"), and one single-instance run (scale_out off) as the baseline for
# the cost of publishing partials. Each run gets a fresh broker (`distilld broker`, a process of its own) preloaded
# with the same synthetic stream (SAMPLES, default 400,000 over PARTITIONS = 128 partitions of samples, labels,
# partials and changelog, about 4 MiB per partition, under the embedded broker's ~5 MiB: 64 features,
# 16 classes, 2 teacher versions, 3 slices, half labeled, EVENT_RATE samples per event second, default 1,000), then
# the instances start together, with the default windows and B = 64, no online student, and state.interval INTERVAL
# (default 10s, the config default; it is also the changelog interval). The rate is the samples ingested (summed
# over the instances' /metrics) over the time from the first ingested sample to the last, polled every 0.25 s. Also
# printed: the bytes each run wrote to distill.partials and distill.changelog per sample, and the samples processed
# twice (rebalances at start hand partitions over; the next owner reprocesses from the last changelog state).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
SAMPLES=${SAMPLES:-400000}
PARTITIONS=${PARTITIONS:-128}
EVENT_RATE=${EVENT_RATE:-1000}
INTERVAL=${INTERVAL:-10s}
INSTANCES=${INSTANCES:-"1 2"}
swift build -c release --product distilld >/dev/null
bin=.build/release/distilld
work=$(mktemp -d -t distilld-scaleout.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

sed -E "s/partitions: 32( |$)/partitions: $PARTITIONS\1/" streams/topics.yaml > "$work/topics.yaml"
python3 - "$SAMPLES" "$EVENT_RATE" > "$work/stream.jsonl" <<'PY'
import json, random, sys
n, rate = int(sys.argv[1]), float(sys.argv[2]); rnd = random.Random(7); C, D = 16, 64
for i in range(n):
    f = [round(rnd.gauss(0, 1), 4) for _ in range(D)]
    z = [round(rnd.gauss(0, 2), 4) for _ in range(C)]
    z2 = [round(v + rnd.gauss(0, 0.3), 4) for v in z]
    s = [round(v + rnd.gauss(0, 0.8), 4) for v in z]
    r = {"id": f"s-{i:08d}", "ts": 1795430000000 + int(i * 1000 / rate), "features": f,
         "teachers": [{"version": "teacher-v1", "logits": z}, {"version": "teacher-v2", "logits": z2}],
         "student": {"version": "student-s1", "logits": s}, "slice": ["web", "app", "api"][i % 3]}
    if i % 2 == 0: r["label"] = max(range(C), key=lambda k: z[k])
    print(json.dumps(r, separators=(",", ":")))
PY

config() { # $1 = file, $2 = bootstrap, $3 = scale-out on/off, $4 = metrics port
    cat > "$1" <<YAML
brokers: "$2"
consumer_group: throughput
model:
  classes: [c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c10, c11, c12, c13, c14, c15]
  features: 64
student: {enabled: false}
state: {dir: "$work/state-$4", interval: $INTERVAL}
scale_out: {enabled: $3}
http: {listen: "127.0.0.1:$4"}
logging: {format: json, level: warning}
YAML
}

ingested() { # sum of distilld_samples_total{outcome="ingested"} over the ports given
    python3 - "$@" <<'PY'
import sys, urllib.request
total = 0
for port in sys.argv[1:]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except Exception:
        continue
    for line in text.splitlines():
        if line.startswith('distilld_samples_total{outcome="ingested"}'):
            total += int(float(line.split()[-1]))
print(total)
PY
}

run() { # $1 = instances, $2 = scale-out true/false
    local n=$1 scale=$2 boot="$work/bootstrap" pids=() ports=()
    rm -f "$boot"
    "$bin" broker --topics "$work/topics.yaml" --bootstrap-file "$boot" >/dev/null 2>&1 &
    local broker=$!
    while [ ! -s "$boot" ]; do sleep 0.1; done
    "$bin" replay "$work/stream.jsonl" --topic samples --bootstrap-file "$boot" >/dev/null 2>&1
    for i in $(seq 1 "$n"); do
        local port=$((9600 + i))
        config "$work/i$i.yaml" "$(cat "$boot")" "$scale" "$port"
        "$bin" run --config "$work/i$i.yaml" >"$work/i$i.log" 2>&1 &
        pids+=($!); ports+=("$port")
    done
    local first="" last="" seen=0 deadline=$((SECONDS + 600))
    while [ $SECONDS -lt $deadline ]; do
        seen=$(ingested "${ports[@]}")
        local now; now=$(date +%s.%N)
        [ -z "$first" ] && [ "$seen" -gt 0 ] && first=$now
        if [ "$seen" -ge "$SAMPLES" ]; then last=$now; break; fi
        sleep 0.25
    done
    sleep 2
    seen=$(ingested "${ports[@]}")
    local rate partials changelog
    rate=$(python3 -c "print(round($SAMPLES / ($last - $first)))")
    partials=$(kcat -b "$(cat "$boot")" -C -t distill.partials -e -q -f '%S\n' 2>/dev/null | awk '{s+=$1} END {print s+0}')
    changelog=$(kcat -b "$(cat "$boot")" -C -t distill.changelog -e -q -f '%S\n' 2>/dev/null | awk '{s+=$1} END {print s+0}')
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    kill -TERM "$broker" 2>/dev/null || true
    wait "$broker" 2>/dev/null || true
    printf '| %s | %s | %s | %s | %s | %s |\n' "$n" "$scale" "$rate" \
        "$(python3 -c "print(round($partials / $SAMPLES, 1))")" "$(python3 -c "print(round($changelog / $SAMPLES, 1))")" \
        "$((seen - SAMPLES))"
}

echo "samples=$SAMPLES partitions=$PARTITIONS event_rate=$EVENT_RATE/s state.interval=$INTERVAL cpus=$(nproc)"
echo "| instances | scale_out | samples/s | partials bytes/sample | changelog bytes/sample | processed twice (at least) |"
echo "|---|---|---|---|---|---|"
run 1 false
for n in $INSTANCES; do run "$n" true; done
