import DistillCore
@testable import DistillDaemon
import Foundation
import Testing

/// The scale-out records' envelope and chunking.
@Suite("Scale-out records")
struct ScaleOutRecordTests {
    @Test("A value larger than a chunk is split and reassembled byte for byte, even interleaved with another")
    func chunking() {
        var rng = SplitMix(seed: 3)
        let big = (0..<(ScaleOutRecord.chunkBytes * 2 + 1234)).map { _ in UInt8(truncatingIfNeeded: Int(rng.uniform() * 256)) }
        let small: [UInt8] = [1, 2, 3]
        let a = ScaleOutRecord.chunks(of: big, kind: .state, partition: 7, token: ScaleOutToken(writer: 1, sequence: 9))
        let b = ScaleOutRecord.chunks(of: small, kind: .sealed, partition: 2, token: ScaleOutToken(writer: 2, sequence: 1))
        #expect(a.count == 3 && b.count == 1)
        var assembler = ChunkAssembler()
        var done: [[UInt8]] = []
        for record in [a[0], a[1], b[0], a[2]] {
            // Through bytes, as on the topic.
            let decoded = ScaleOutRecord(bytes: record.bytes)
            #expect(decoded == record)
            if let decoded, let value = assembler.add(decoded) { done.append(value) }
        }
        #expect(done.count == 2)
        #expect(Bool(done[0] == small))
        #expect(Bool(done[1] == big))
        #expect(ScaleOutRecord(bytes: Array("{\"id\":1}".utf8)) == nil, "not an envelope")
        #expect(ScaleOutRecord(bytes: Array(a[0].bytes.prefix(20))) == nil, "truncated")
    }

    @Test("An incomplete value (its writer died mid-way) is never returned, and the assembler stays bounded")
    func incomplete() {
        var assembler = ChunkAssembler(limit: 4)
        for writer in 0..<100 as Range<UInt64> {
            let chunks = ScaleOutRecord.chunks(of: [UInt8](repeating: 1, count: ScaleOutRecord.chunkBytes + 1),
                                               kind: .state, partition: 0,
                                               token: ScaleOutToken(writer: writer, sequence: 1))
            #expect(assembler.add(chunks[0]) == nil)
        }
        let last = ScaleOutRecord.chunks(of: [UInt8](repeating: 2, count: ScaleOutRecord.chunkBytes + 1),
                                         kind: .state, partition: 0, token: ScaleOutToken(writer: 1000, sequence: 1))
        #expect(assembler.add(last[0]) == nil)
        #expect(assembler.add(last[1])?.count == ScaleOutRecord.chunkBytes + 1)
    }
}

/// What scale-out publishes with the default configuration, for the README's sizing.
@Suite("Scale-out sizes")
struct ScaleOutSizeTests {
    @Test("With config/distilld.yaml (C = 16, B = 64, 2 teacher versions, 3 slices) one partition's sealed partials and changelog state fit a record and the embedded broker; sizes printed")
    func defaultSizes() throws {
        var yaml = try String(contentsOf: packageRoot.appendingPathComponent("config/distilld.yaml"), encoding: .utf8)
        yaml += "\nscale_out: {enabled: true}\n"
        let config = try DistillConfig.parse(yaml)
        let engine = try DistillEngine(config: config, role: .worker)
        var options = BenchOptions()
        options.eventRate = 100
        let stream = SyntheticStream(shape: SyntheticStream.Shape(options), seed: 1)
        for t in stream.teacherRecords() {
            _ = engine.handleTeacher(t.value, key: Array(t.key.utf8),
                                     at: InputPosition(topic: "teachers", partition: 0, offset: 0))
        }
        engine.partitionsAssigned([0])
        // 6,000 samples at 100 per event second: one minute, one pane of the `fast` window.
        var buffer: [UInt8] = []
        var partials: [WindowSetPartial] = []
        for i in 0..<6_000 {
            _ = stream.sample(i, into: &buffer)
            for case .partial(let p) in engine.handleSample(buffer, key: nil, at: InputPosition(
                topic: "samples", partition: 0, offset: Int64(i))) { partials.append(p) }
        }
        let state = try StateBinaryEncoder().encode(engine.partitionState(0, samplesTopic: "samples"))
        for case .partial(let p) in engine.partitionIdle(0) { partials.append(p) }
        var bytes: [String: Int] = [:]
        for p in partials { bytes[p.window] = max(bytes[p.window] ?? 0, try StateBinaryEncoder().encode(p).count) }
        print("figure: sealed partial bytes (largest per window) \(bytes.sorted { $0.key < $1.key }) "
              + "partition state bytes=\(state.count) groups=\(partials.first?.statistics?.groups.count ?? 0)")
        #expect(bytes["fast"] != nil && bytes["drift"] != nil)
        #expect(bytes.values.allSatisfy { $0 < 1_000_000 }, "a sealed partial is one record under librdkafka's limit")
        #expect(state.count < 5 * 1_048_576, "a partition's state fits a partition of the embedded broker")
    }
}
