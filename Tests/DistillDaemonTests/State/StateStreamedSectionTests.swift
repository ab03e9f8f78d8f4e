import DistillCore
import Foundation
import Testing

@testable import DistillDaemon

/// A section encoded while the checkpoint is written must give the very file its encoded bytes would: the second
/// method each test compares with is the in-memory encoding, which held the whole state before this existed.
@Suite("StateStreamedSection")
struct StateStreamedSectionTests {
    /// Samples left waiting for labels, so that the engine state is well over two of the file sink's 256 KiB buffers:
    /// lengths of bytes already written are then patched in the file, and a disk can fill up at 300 or 600 KB.
    static let waiting = 5_000

    /// The bytes `encode(_:spillBytes:spill:)` produces, reassembled: spills in order, then the patches.
    static func streamed<T: Encodable>(_ value: T, spillBytes: Int) throws -> (bytes: [UInt8], patches: Int) {
        var out: [UInt8] = []
        var spills = 0
        let (count, patches) = try StateBinaryEncoder().encode(value, spillBytes: spillBytes) {
            out.append(contentsOf: $0)
            spills += 1
        }
        #expect(count == out.count)
        for patch in patches {
            #expect(out[patch.offset..<patch.offset + 4].allSatisfy { $0 == 0 }, "a patch lands on its placeholder")
            out.replaceSubrange(patch.offset..<patch.offset + 4, with: patch.bytes)
        }
        #expect(spills >= min(2, count / max(spillBytes, 1)), "the encoding was spilled, not held")
        return (out, patches.count)
    }

    @Test("Spilled encodings of a real engine state equal the in-memory one, byte for byte",
          arguments: [1, 100, 4096, 1 << 20])
    func spilledEqualsInMemory(spillBytes: Int) throws {
        let state = try StateBinaryCoderTests.engineState(waiting: Self.waiting)
        let whole = try StateBinaryEncoder().encode(state)
        let (bytes, patches) = try Self.streamed(state, spillBytes: spillBytes)
        #expect(bytes == whole)
        if spillBytes < whole.count / 4 {
            #expect(patches > 0, "containers open across a spill are patched afterwards")
        }
        _ = try StateBinaryDecoder().decode(DistillEngine.EngineState.self, from: bytes)
    }

    struct Column: Encodable {
        var values: [[Float]]
        var announced: Int?
        var streamed = true
        func encode(to encoder: any Encoder) throws {
            var c = encoder.unkeyedContainer()
            let bytes = values.reduce(0) { $0 + $1.count * 4 }
            if streamed {
                try c.encode(StateBinaryStreamedBytes(count: announced ?? bytes) { piece in
                    for v in values { try v.withUnsafeBytes { try piece($0) } }
                })
            } else {
                try c.encode(values.flatMap { $0 }.withUnsafeBytes { Data($0) })
            }
            try c.encode("after")
        }
    }

    @Test("Bytes streamed piece by piece encode as the Data of them all, in memory, spilled and as JSON")
    func streamedBytes() throws {
        let values = (0..<300).map { i in (0..<(i % 7)).map { Float(i * 10 + $0) / 3 } }
        let data = try StateBinaryEncoder().encode(Column(values: values, streamed: false))
        #expect(try StateBinaryEncoder().encode(Column(values: values)) == data)
        for spill in [1, 64, 1000] {
            #expect(try Self.streamed(Column(values: values), spillBytes: spill).bytes == data)
        }
        #expect(try JSONEncoder().encode(Column(values: values)) == JSONEncoder().encode(Column(values: values,
                                                                                                 streamed: false)))
        #expect(throws: EncodingError.self) { try StateBinaryEncoder().encode(Column(values: values, announced: 5)) }
    }

    @Test("The CRC's zero-byte operator equals feeding the zeros, and a patched checksum equals the patched bytes'")
    func checksumCorrection() {
        var rng = SplitMix(seed: 5)
        for count in [0, 1, 2, 3, 7, 8, 9, 255, 256, 1000, 4097, 70_001] {
            let register = UInt32(truncatingIfNeeded: rng.next())
            // Bit by bit, as the polynomial division is defined (no tables).
            var direct = register
            for _ in 0..<count * 8 { direct = direct & 1 != 0 ? (direct >> 1) ^ 0x82F6_3B78 : direct >> 1 }
            #expect(StateCRC32C.zeros(register, count: count) == direct, "\(count) zero bytes")
        }
        for trial in 0..<50 {
            let length = 8 + Int(rng.next() % 5000)
            var message = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let width = trial % 2 == 0 ? 4 : 8
            let at = Int(rng.next() % UInt64(length - width + 1))
            for i in at..<at + width { message[i] = 0 }
            var crc = StateCRC32C()
            crc.update(message)
            let patch = (0..<width).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            crc.overwriteZeros(with: patch, bytesAfter: length - at - width)
            message.replaceSubrange(at..<at + width, with: patch)
            #expect(crc.value == StateCRC32C.checksum(message), "trial \(trial): \(width) bytes at \(at) of \(length)")
        }
    }

    @Test("A checkpoint with a streamed section is the file of the same checkpoint with the section's bytes")
    func checkpointFileIdentical() throws {
        let state = try StateBinaryCoderTests.engineState(waiting: Self.waiting)
        let base = stateSampleCheckpoint(sequence: 3, sectionSize: 300)
        var held = base
        held.sections.append(StateSection(name: "engine", bytes: try StateBinaryEncoder().encode(state)))
        let expected = try held.encoded()
        let streamed = try base.encoded(streaming: [StateStreamedSection(name: "engine", value: state)])
        #expect(streamed == expected)
        #expect(try StateCheckpoint.decode(streamed) == held)
        #expect(throws: StateError.self) {
            try base.encoded(streaming: [StateStreamedSection(name: "windows", value: state)])
        }
    }

    @Test("StateStore streams a large section to disk through short writes and pwrite; the file is the same",
          arguments: [nil, 1000])
    func storeStreams(maximumWriteChunk: Int?) throws {
        let state = try StateBinaryCoderTests.engineState(waiting: Self.waiting)
        let encoded = try StateBinaryEncoder().encode(state)
        try #require(encoded.count > 2 * StateFileSink.bufferSize, "large enough to patch bytes already written")
        print("figure: streamed engine state \(encoded.count) B")
        var held = stateSampleCheckpoint(sequence: 1)
        held.sections.append(StateSection(name: "engine", bytes: encoded))
        try withStateTempDirectory { dir in
            let io = StateFaultyFileIO(.init(maximumWriteChunk: maximumWriteChunk))
            let store = StateStore(directory: dir.path, io: io)
            let receipt = try store.write(stateSampleCheckpoint(sequence: 1),
                                          streaming: [StateStreamedSection(name: "engine", value: state)])
            let file = try stateReadFile(dir.file("state.ckpt"))
            #expect(file == (try held.encoded()))
            #expect(receipt.bytes == UInt64(file.count))
            #expect(io.calls.contains("pwrite"), "lengths of bytes already written are patched in the file")
            #expect(try StateStore(directory: dir.path).load().checkpoint == held)
        }
    }

    @Test("A disk that fills up in the middle of a streamed section: a typed error, the previous checkpoint stays",
          arguments: [100, 300_000, 600_000])
    func diskFullWhileStreaming(budget: Int) throws {
        let state = try StateBinaryCoderTests.engineState(waiting: Self.waiting)
        try withStateTempDirectory { dir in
            try StateStore(directory: dir.path).write(stateSampleCheckpoint(sequence: 1))
            let before = try stateReadFile(dir.file("state.ckpt"))
            let store = StateStore(directory: dir.path, io: StateFaultyFileIO(.init(writeBudget: budget)))
            #expect {
                try store.write(stateSampleCheckpoint(sequence: 2),
                                streaming: [StateStreamedSection(name: "engine", value: state)])
            } throws: { ($0 as? StateError)?.code == "state.no_space" }
            #expect(try stateReadFile(dir.file("state.ckpt")) == before)
            #expect(stateListing(dir.path) == ["state.ckpt"])
        }
    }

    @Test("A failed patch fails the write: nothing is renamed and the previous checkpoint stays")
    func failedPatch() throws {
        let state = try StateBinaryCoderTests.engineState(waiting: Self.waiting)
        try withStateTempDirectory { dir in
            try StateStore(directory: dir.path).write(stateSampleCheckpoint(sequence: 1))
            let before = try stateReadFile(dir.file("state.ckpt"))
            let io = StateFaultyFileIO(.init(failCall: "pwrite", failCallErrno: EIO))
            let store = StateStore(directory: dir.path, io: io)
            #expect(throws: StateError.self) {
                try store.write(stateSampleCheckpoint(sequence: 2),
                                streaming: [StateStreamedSection(name: "engine", value: state)])
            }
            #expect(try stateReadFile(dir.file("state.ckpt")) == before)
            #expect(stateListing(dir.path) == ["state.ckpt"])
        }
    }
}
