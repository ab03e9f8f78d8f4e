import Foundation
import Numerics
import Testing

@testable import DistillCore

// MARK: - safetensors and student checkpoints

private func trainedDistiller(loss: KDLoss = .auxiliary(), samples: Int = 300) throws -> OnlineDistiller {
    let d = try OnlineDistiller(
        OnlineDistillerConfiguration(
            model: StudentModelConfiguration(inputDimension: 6, classCount: 3, hiddenLayers: [5, 4], seed: 9),
            loss: loss, batchSize: 8))
    let teacher = SyntheticTeacher(seed: 3, d: 6, c: 3, hidden: 4)
    var rng = StudentRandom(seed: 4)
    for n in 0..<samples {
        let x = StudentStreams.features(&rng, 6)
        let z = teacher.logits(x)
        let version = n < samples / 2 ? "distilbert-v7" : "distilbert-v8"
        d.learn(
            features: x, teachers: [TeacherLogits(version: version, logits: z)], label: n % 3 == 0 ? argmax(z) : nil)
    }
    return d
}

private let evidence = GateEvidence(
    agreement: 0.97, agreementLower: 0.955, agreementUpper: 0.982, ece: 0.031, eceInterval: 0.02...0.044,
    sampleCount: 5_000)

private func checkpoint(_ d: OnlineDistiller) -> StudentCheckpoint {
    d.makeCheckpoint(
        evidence: evidence, teacherStrategy: TeacherStrategy.latest.description,
        decision: #"{"trigger":"interval","gate":"agreement_lower>=0.95"}"#, calibrationTemperature: 1.37,
        createdAtMilliseconds: 1_763_900_000_000)
}

@Suite("safetensors")
struct SafeTensorsTests {
    @Test("encode/decode round-trips values, shapes, names and metadata bit-exactly")
    func roundTrip() throws {
        let tensors = [
            SafeTensor(name: "a.weight", shape: [2, 3], values: [1, -2, 3.5, .pi, -0.0, 1e-30]),
            SafeTensor(name: "a.bias", shape: [2], values: [.greatestFiniteMagnitude, -.leastNonzeroMagnitude]),
            SafeTensor(name: "scalar", shape: [], values: [42]),
            SafeTensor(name: "empty", shape: [0, 4], values: []),
        ]
        let meta = ["quote\"key": "line\nbreak \\ tab\t ünïcode", "plain": "x"]
        let bytes = SafeTensors.encode(tensors, metadata: meta)
        // Header length is a multiple of 8 and the data follows it.
        var n = 0
        for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
        #expect(n % 8 == 0)
        #expect(bytes.count == 8 + n + 4 * (6 + 2 + 1))
        let (decoded, decodedMeta) = try SafeTensors.decode(bytes)
        #expect(decodedMeta == meta)
        #expect(Set(decoded.map(\.name)) == Set(tensors.map(\.name)))
        for t in tensors {
            let d = try #require(decoded.first { $0.name == t.name })
            #expect(d.shape == t.shape)
            #expect(d.values.map(\.bitPattern) == t.values.map(\.bitPattern))
        }
    }

    @Test("malformed buffers are rejected with the part named")
    func malformed() throws {
        let good = SafeTensors.encode([SafeTensor(name: "w", shape: [2], values: [1, 2])], metadata: [:])
        #expect(throws: StudentError.self) { try SafeTensors.decode(Array(good.prefix(5))) }
        #expect(throws: StudentError.self) { try SafeTensors.decode(Array(good.dropLast(4))) }
        #expect(throws: StudentError.self) { try SafeTensors.decode(good + [0, 0, 0, 0]) }
        var bogusLength = good
        bogusLength[0] = 0xFF
        bogusLength[5] = 0x7F
        #expect(throws: StudentError.self) { try SafeTensors.decode(bogusLength) }
        func withHeader(_ json: String, data: Int) -> [UInt8] {
            var h = Array(json.utf8)
            while h.count % 8 != 0 { h.append(0x20) }
            var out: [UInt8] = []
            withUnsafeBytes(of: UInt64(h.count).littleEndian) { out.append(contentsOf: $0) }
            return out + h + [UInt8](repeating: 0, count: data)
        }
        let f16 = withHeader(#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, data: 4)
        do {
            _ = try SafeTensors.decode(f16)
            Issue.record("F16 should be rejected")
        } catch let e as StudentError {
            #expect(e.field == "w.dtype")
        }
        let gap = withHeader(
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            data: 12)
        #expect(throws: StudentError.self) { try SafeTensors.decode(gap) }
        let wrongSize = withHeader(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: 4)
        #expect(throws: StudentError.self) { try SafeTensors.decode(wrongSize) }
        #expect(throws: StudentError.self) { try SafeTensors.decode(withHeader("not json", data: 0)) }
    }
}

@Suite("Student checkpoints")
struct StudentCheckpointTests {
    @Test("a checkpoint round-trips through safetensors, and restoring it reproduces the EMA model")
    func roundTrip() throws {
        let d = try trainedDistiller()
        let cp = checkpoint(d)
        #expect(
            cp.tensors.map(\.name) == [
                "trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias", "head.weight", "head.bias",
                "aux_head.weight", "aux_head.bias",
            ])
        #expect(cp.tensors[0].shape == [5, 6])
        #expect(cp.metadata.teacherVersions == ["distilbert-v7", "distilbert-v8"])
        #expect(cp.metadata.teacherStrategy == "latest")
        #expect(cp.metadata.lossName == "auxiliary")
        #expect(cp.metadata.samplesSeen == 300)
        let back = try StudentCheckpoint(safetensors: cp.safetensors())
        #expect(back == cp)

        let fresh = try OnlineDistiller(d.configuration)
        try fresh.restore(from: back)
        var rng = StudentRandom(seed: 12)
        for _ in 0..<20 {
            let x = StudentStreams.features(&rng, 6)
            #expect(fresh.scoreEMA(features: x) == d.scoreEMA(features: x))
            #expect(fresh.scoreStudent(features: x) == d.scoreEMA(features: x))
        }
    }

    @Test("restoring a checkpoint of another shape fails naming the tensor")
    func shapeMismatch() throws {
        let cp = checkpoint(try trainedDistiller())
        let other = try OnlineDistiller(
            OnlineDistillerConfiguration(
                model: StudentModelConfiguration(inputDimension: 6, classCount: 3, hiddenLayers: [7, 4]),
                loss: .auxiliary()))
        do {
            try other.restore(from: cp)
            Issue.record("expected a shape error")
        } catch let e as StudentError {
            #expect(e.code == .invalidCheckpoint)
            #expect(e.field == "trunk.0.weight")
        }
    }

    @Test("gate: writes only when due and agreement's lower bound ≥ 0.95 (and ECE within bound when set)")
    func gate() throws {
        let policy = StudentCheckpointPolicy(intervalSamples: 1_000)
        try policy.validate()
        #expect(policy.decide(samplesSinceLastCheckpoint: 999, evidence: evidence) == .notDue)
        #expect(policy.decide(samplesSinceLastCheckpoint: 1_000, evidence: evidence) == .write)
        #expect(policy.decide(samplesSinceLastCheckpoint: 5_000, evidence: nil) != .write)
        var weak = evidence
        weak.agreement = 0.96
        weak.agreementLower = 0.94  // point estimate passes, interval does not
        guard case .blocked = policy.decide(samplesSinceLastCheckpoint: 1_000, evidence: weak) else {
            Issue.record("a lower bound of 0.94 must block")
            return
        }
        var strict = policy
        strict.maximumECE = 0.04
        #expect(strict.decide(samplesSinceLastCheckpoint: 1_000, evidence: evidence) != .write)  // ECE upper 0.044
        strict.maximumECE = 0.05
        #expect(strict.decide(samplesSinceLastCheckpoint: 1_000, evidence: evidence) == .write)
        #expect(throws: StudentError.self) { try StudentCheckpointPolicy(retained: 0).validate() }
    }

    @Test("rollback ring keeps the last 3, rolls back to the previous, and survives serialisation")
    func ring() throws {
        let d = try trainedDistiller(samples: 100)
        var ring = StudentCheckpointRing()
        var made: [StudentCheckpoint] = []
        let teacher = SyntheticTeacher(seed: 3, d: 6, c: 3, hidden: 4)
        var rng = StudentRandom(seed: 5)
        for k in 0..<4 {
            for _ in 0..<40 {
                let x = StudentStreams.features(&rng, 6)
                d.learn(features: x, teachers: [TeacherLogits(version: "v\(k)", logits: teacher.logits(x))], label: nil)
            }
            let cp = checkpoint(d)
            d.resetTeacherVersions()
            made.append(cp)
            ring.push(cp)
        }
        #expect(ring.checkpoints == Array(made.suffix(3)))
        #expect(made[3].metadata.teacherVersions == ["v2", "v3"])
        let restored = try StudentCheckpointRing(serialized: ring.serialized())
        #expect(restored == ring)
        let rolledBack = ring.rollback()
        let target = try #require(rolledBack)
        #expect(target == made[2])
        try d.restore(from: target)
        #expect(d.model.parameterArray == (try d.model.flatParameters(from: made[2].tensors)))
        let second = ring.rollback()
        #expect(second == made[1])
        let third = ring.rollback()
        #expect(third == nil)
        #expect(ring.checkpoints.count == 1)
        #expect(throws: StudentError.self) { try StudentCheckpointRing(serialized: [1, 2, 3, 4, 5, 6, 7, 8]) }
    }

    @Test("trainer state round-trips: a restored trainer continues bit-identically")
    func trainerStateResumes() throws {
        for loss in [KDLoss.hinton(), .dkd(), .auxiliary()] {
            let a = try trainedDistiller(loss: loss, samples: 203)
            a.flush()
            let state = a.trainerState()
            let b = try OnlineDistiller(a.configuration)
            try b.restoreTrainerState(state)
            #expect(b.samplesSeen == a.samplesSeen && b.stepsApplied == a.stepsApplied)
            #expect(b.optimizer.stepCount == a.optimizer.stepCount)
            #expect(b.teacherVersionsUsed == a.teacherVersionsUsed)
            let teacher = SyntheticTeacher(seed: 3, d: 6, c: 3, hidden: 4)
            var rng = StudentRandom(seed: 21)
            for n in 0..<64 {
                let x = StudentStreams.features(&rng, 6)
                let z = teacher.logits(x)
                let entry = [TeacherLogits(version: n < 32 ? "distilbert-v8" : "distilbert-v9", logits: z)]
                let oa = a.learn(features: x, teachers: entry, label: n % 2 == 0 ? argmax(z) : nil)
                let ob = b.learn(features: x, teachers: entry, label: n % 2 == 0 ? argmax(z) : nil)
                #expect(oa == ob)
            }
            #expect(a.model.parameterArray == b.model.parameterArray)
            #expect(a.emaParameterArray == b.emaParameterArray)
            #expect(a.teacherChanges == b.teacherChanges)
        }
        // Wrong loss or a damaged buffer is refused.
        let hinton = try trainedDistiller(loss: .hinton(), samples: 16)
        let aux = try trainedDistiller(loss: .auxiliary(), samples: 16)
        #expect(throws: StudentError.self) { try aux.restoreTrainerState(hinton.trainerState()) }
        #expect(throws: StudentError.self) { try aux.restoreTrainerState(Array(aux.trainerState().dropLast(8))) }
    }

    /// Proves that others can load the file: Python's `safetensors` package (PyPI) reads it with NumPy.
    /// Skipped (with a printed note) when python3, numpy or safetensors cannot be had.
    @Test("Python's safetensors loads the checkpoint with the same values and metadata")
    func pythonLoads() throws {
        guard pythonHasSafetensors() else {
            print("SKIPPED: python3 with numpy and safetensors is not available; Python interop not checked")
            return
        }
        let cp = checkpoint(try trainedDistiller())
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distilld-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("student.safetensors")
        try Data(cp.safetensors()).write(to: file)
        var expected: [String: Any] = [:]
        for t in cp.tensors { expected[t.name] = ["shape": t.shape, "values": t.values.map(Double.init)] }
        let expectedFile = dir.appendingPathComponent("expected.json")
        try JSONSerialization.data(
            withJSONObject: ["tensors": expected, "metadata": cp.metadata.stringDictionary]
        ).write(to: expectedFile)
        let script = """
            import json, sys
            import numpy as np
            from safetensors.numpy import load_file
            from safetensors import safe_open
            path, exp_path = sys.argv[1], sys.argv[2]
            exp = json.load(open(exp_path))
            got = load_file(path)
            assert set(got) == set(exp["tensors"]), (sorted(got), sorted(exp["tensors"]))
            for name, e in exp["tensors"].items():
                a = got[name]
                assert a.dtype == np.float32, (name, a.dtype)
                assert list(a.shape) == e["shape"], (name, a.shape, e["shape"])
                assert np.array_equal(a.reshape(-1), np.array(e["values"], dtype=np.float32)), name
            with safe_open(path, framework="np") as f:
                meta = f.metadata()
            assert meta == exp["metadata"], (meta, exp["metadata"])
            print("python-ok", len(got), "tensors", meta["teacher_versions"])
            """
        let (status, output) = try runProcess(["python3", "-c", script, file.path, expectedFile.path])
        print(output)
        #expect(status == 0, "python check failed: \(output)")
        #expect(output.contains("python-ok 8 tensors"))
    }
}

/// Whether `python3 -c "import numpy, safetensors"` works; tries `pip install safetensors` once if not.
private func pythonHasSafetensors() -> Bool {
    func check() -> Bool { ((try? runProcess(["python3", "-c", "import numpy, safetensors.numpy"]))?.0 ?? 1) == 0 }
    if check() { return true }
    _ = try? runProcess(["python3", "-m", "pip", "install", "-q", "safetensors"])
    return check()
}

/// Runs a command through /usr/bin/env; returns the exit status and combined output.
private func runProcess(_ arguments: [String]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}
