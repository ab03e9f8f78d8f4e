import DistillCore
import DistillDaemon
import Foundation
import Testing

/// Online-student checkpoints from the engine: on the interval, only through the gate.
@Suite("Student checkpoints from the engine")
struct StudentPublishingTests {
    static func run(gate: Double) throws -> (DistillEngine, [StudentCheckpoint]) {
        var yaml = try String(contentsOf: packageRoot.appendingPathComponent("config/demo.yaml"), encoding: .utf8)
        // A fast-moving EMA and a larger step, so 1,000 samples are enough to learn the demo's linear teacher.
        yaml = yaml.replacingOccurrences(of: "checkpoint_every: 2000", with: """
            checkpoint_every: 1000
              gate_agreement: \(gate)
              learning_rate: 0.05
              ema_initial_decay: 0.9
              ema_decay: 0.95
            """)
        let config = try DistillConfig.parse(yaml)
        let engine = try DistillEngine(config: config)
        let root = packageRoot.appendingPathComponent("streams/examples").path
        let teachers = try JSONLReplayer(path: root + "/rotation-teachers.jsonl", topic: "teachers").records()
        for (i, t) in teachers.enumerated() {
            _ = engine.handleTeacher(t, key: nil, at: InputPosition(topic: "teachers", partition: 0, offset: Int64(i)))
        }
        var checkpoints: [StudentCheckpoint] = []
        let samples = try JSONLReplayer(path: root + "/rotation.jsonl", topic: "samples").records()
        for (i, s) in samples.prefix(3000).enumerated() {
            for case .studentCheckpoint(let c) in engine.handleSample(
                s, key: nil, at: InputPosition(topic: "samples", partition: 0, offset: Int64(i))) {
                checkpoints.append(c)
            }
        }
        return (engine, checkpoints)
    }

    @Test("Every 1000 samples a checkpoint passes a lenient gate, round-trips through safetensors, names its teacher")
    func published() throws {
        let (engine, checkpoints) = try Self.run(gate: 0.5)
        #expect(checkpoints.count == 3)
        #expect(engine.counters.studentCheckpoints == 3)
        let first = try #require(checkpoints.first)
        let bytes = first.safetensors()
        let back = try StudentCheckpoint(safetensors: bytes)
        #expect(back.safetensors() == bytes)
        #expect(String(decoding: bytes, as: UTF8.self).contains("distilbert-v2"), "paired teacher in the metadata")
    }

    @Test("A gate the student cannot pass publishes nothing and counts the blocked attempts")
    func blocked() throws {
        let (engine, checkpoints) = try Self.run(gate: 0.9999)
        #expect(checkpoints.isEmpty)
        #expect(engine.counters.studentCheckpointsBlocked == 3)
    }
}
