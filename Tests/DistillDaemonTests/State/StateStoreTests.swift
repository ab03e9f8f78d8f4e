import DistillDaemon
import Foundation
import Testing

// MARK: - Write and restore

@Suite("StateStore write and restore")
struct StateStoreTests {
    @Test("a missing checkpoint is a fresh start; a written one restores exactly")
    func roundTrip() throws {
        try withStateTempDirectory { dir in
            let store = StateStore(directory: dir.path)
            #expect(try store.load() == .fresh)
            #expect(store.nextSequence == 1)

            let checkpoint = stateSampleCheckpoint(sequence: 1)
            let receipt = try store.write(checkpoint)
            #expect(receipt.path == dir.file("state.ckpt"))
            #expect(receipt.bytes == UInt64(try checkpoint.encoded().count))
            #expect(try stateReadFile(dir.file("state.ckpt")) == (try checkpoint.encoded()))
            #expect(stateListing(dir.path) == ["state.ckpt"])

            let reopened = StateStore(directory: dir.path)
            #expect(try reopened.load() == .loaded(checkpoint, path: dir.file("state.ckpt")))
            #expect(reopened.nextSequence == 2)
        }
    }

    @Test("the previous checkpoint is kept as .prev and the temp file does not linger")
    func generations() throws {
        try withStateTempDirectory { dir in
            let store = StateStore(directory: dir.path)
            for sequence: UInt64 in 1...3 { try store.write(stateSampleCheckpoint(sequence: sequence)) }
            #expect(stateListing(dir.path) == ["state.ckpt", "state.ckpt.prev"])
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt")).sequence == 3)
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt.prev")).sequence == 2)
        }
    }

    @Test("sequence numbers must increase, across restarts too")
    func sequence() throws {
        try withStateTempDirectory { dir in
            let store = StateStore(directory: dir.path)
            try store.write(stateSampleCheckpoint(sequence: 7))
            let reopened = StateStore(directory: dir.path)
            _ = try reopened.load()
            #expect {
                try reopened.write(stateSampleCheckpoint(sequence: 7))
            } throws: { ($0 as? StateError)?.kind == .sequenceNotIncreasing(last: 7, attempted: 7) }
            #expect(reopened.metrics.writeFailures == 1)
            #expect(try reopened.write(stateSampleCheckpoint(sequence: reopened.nextSequence)).sequence == 8)
            // A store that never loaded still reads the floor from the file it would replace.
            #expect {
                try StateStore(directory: dir.path).write(stateSampleCheckpoint(sequence: 3))
            } throws: { ($0 as? StateError)?.kind == .sequenceNotIncreasing(last: 8, attempted: 3) }
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt")).sequence == 8)
        }
    }

    @Test("a missing state directory is created, nested")
    func createsDirectory() throws {
        try withStateTempDirectory { dir in
            let store = StateStore(directory: dir.file("a/b/state"))
            try store.write(stateSampleCheckpoint(sequence: 1))
            #expect(stateFileExists(dir.file("a/b/state/state.ckpt")))
        }
    }

    @Test("metrics: counts, bytes, duration, age")
    func metrics() throws {
        try withStateTempDirectory { dir in
            let store = StateStore(directory: dir.path, wallClockMilliseconds: { 1_000_000 })
            #expect(store.metrics.lastWrittenAtMilliseconds == nil)
            try store.write(stateSampleCheckpoint(sequence: 1))
            try store.write(stateSampleCheckpoint(sequence: 2))
            let metrics = store.metrics
            let size = UInt64(try stateReadFile(dir.file("state.ckpt")).count)
            #expect(metrics.writes == 2)
            #expect(metrics.lastWrittenBytes == size)
            #expect(metrics.totalBytesWritten == 2 * size)
            #expect(metrics.lastSequence == 2)
            #expect(store.lastWriteDuration != nil)
            #expect(metrics.ageMilliseconds(nowMilliseconds: 1_000_250) == 250)
        }
    }

    @Test("the atomic helper replaces small files and leaves no temp file")
    func atomicHelper() throws {
        try withStateTempDirectory { dir in
            let path = dir.file("bootstrap.seed")
            try StateAtomicFile.write(Array("one".utf8), to: path)
            try StateAtomicFile.write(Array("two!".utf8), to: path)
            #expect(try stateReadFile(path) == Array("two!".utf8))
            #expect(stateListing(dir.path) == ["bootstrap.seed"])

            let failing = StateFaultyFileIO(.init(failCall: "fsync", failCallErrno: EIO))
            #expect {
                try StateAtomicFile.write(Array("three".utf8), to: path, io: failing)
            } throws: { ($0 as? StateError)?.code == "state.io_failed" }
            #expect(try stateReadFile(path) == Array("two!".utf8))
            #expect(stateListing(dir.path) == ["bootstrap.seed"])
        }
    }
}

// MARK: - Corrupt, truncated, old-format and missing checkpoints (issue 7)

@Suite("StateStore corrupt checkpoints")
struct StateStoreCorruptionTests {
    /// One good checkpoint on disk, then `damage` applied to it; no `.prev` exists.
    private func damagedStore(
        _ dir: StateTempDirectory, _ damage: ([UInt8]) -> [UInt8]
    ) throws -> (StateStore, original: [UInt8]) {
        try StateStore(directory: dir.path).write(stateSampleCheckpoint(sequence: 1))
        let original = try stateReadFile(dir.file("state.ckpt"))
        try stateWriteFile(damage(original), dir.file("state.ckpt"))
        return (StateStore(directory: dir.path), original)
    }

    static let damages: [(String, String, @Sendable ([UInt8]) -> [UInt8])] = [
        ("empty", "state.truncated", { _ in [] }),
        ("half magic", "state.truncated", { Array($0[0..<4]) }),
        ("header only", "state.truncated", { Array($0[0..<20]) }),
        ("last byte gone", "state.truncated", { Array($0.dropLast()) }),
        ("payload byte flipped", "state.checksum_mismatch", { var b = $0; b[60] ^= 0x01; return b }),
        ("trailer flipped", "state.checksum_mismatch", { var b = $0; b[b.count - 1] ^= 0x80; return b }),
        ("not a checkpoint", "state.bad_magic", { _ in Array("windows: []\n".utf8) }),
        ("old format v0", "state.unsupported_version", { var b = $0; b[8] = 0; return b }),
        ("newer format v2", "state.unsupported_version", { var b = $0; b[8] = 2; return b }),
        ("garbage appended", "state.trailing_bytes", { $0 + [0, 0] }),
    ]

    @Test("each kind of damage is detected, typed, and explained with path and remedy", arguments: 0..<damages.count)
    func detected(_ index: Int) throws {
        let (label, code, damage) = Self.damages[index]
        try withStateTempDirectory { dir in
            let (store, _) = try damagedStore(dir, damage)
            do {
                let result = try store.load()
                Issue.record("\(label): loaded \(result)")
            } catch let error as StateError {
                #expect(error.code == code, "\(label)")
                #expect(error.isCorruption)
                #expect(error.path == dir.file("state.ckpt"))
                #expect(error.description.contains(dir.file("state.ckpt")))
                #expect(error.description.contains("state.on_corrupt: reset"))
                #expect(error.description.contains("restore the file from backup"))
            }
        }
    }

    @Test("fail policy throws and leaves the evidence where it was; no state is produced")
    func failPolicy() throws {
        try withStateTempDirectory { dir in
            let (store, original) = try damagedStore(dir) { var b = $0; b[70] ^= 0xFF; return b }
            var restored: StateCheckpoint?
            #expect {
                restored = try store.loadApplying(.fail).checkpoint
            } throws: { ($0 as? StateError)?.code == "state.checksum_mismatch" }
            #expect(restored == nil)
            #expect(stateListing(dir.path) == ["state.ckpt"])
            #expect(try stateReadFile(dir.file("state.ckpt")) != original)
        }
    }

    @Test("reset policy moves the bad file aside byte for byte and starts fresh")
    func resetPolicy() throws {
        try withStateTempDirectory { dir in
            let (store, _) = try damagedStore(dir) { Array($0.dropLast(3)) }
            let damaged = try stateReadFile(dir.file("state.ckpt"))
            let result = try store.loadApplying(.reset)
            guard case .reset(let error, let moved) = result else {
                Issue.record("expected reset, got \(result)")
                return
            }
            #expect(result.checkpoint == nil)
            #expect(error.code == "state.truncated")
            #expect(moved.count == 1)
            #expect(moved[0].hasPrefix(dir.file("state.ckpt.corrupt-")))
            #expect(try stateReadFile(moved[0]) == damaged)
            #expect(!stateFileExists(dir.file("state.ckpt")))
            #expect(store.metrics.restoreFallbacks == 1)
            // Fresh start: the first write succeeds and restores.
            try store.write(stateSampleCheckpoint(sequence: store.nextSequence))
            #expect(try StateStore(directory: dir.path).load().checkpoint?.sequence == 1)
        }
    }

    @Test("a corrupt latest falls back to .prev, reported, under either policy", arguments: OnCorrupt.allCases)
    func fallback(_ policy: OnCorrupt) throws {
        try withStateTempDirectory { dir in
            let first = stateSampleCheckpoint(sequence: 1)
            let writer = StateStore(directory: dir.path)
            try writer.write(first)
            try writer.write(stateSampleCheckpoint(sequence: 2))
            var bytes = try stateReadFile(dir.file("state.ckpt"))
            bytes[bytes.count / 2] ^= 0x10
            try stateWriteFile(bytes, dir.file("state.ckpt"))

            let store = StateStore(directory: dir.path)
            let result = try store.loadApplying(policy)
            guard case .recovered(let restored, let path, let skipped) = result else {
                Issue.record("expected recovered, got \(result)")
                return
            }
            #expect(restored == first)
            #expect(path == dir.file("state.ckpt.prev"))
            #expect(skipped.code == "state.checksum_mismatch")
            #expect(store.metrics.restoreFallbacks == 1)
            // The damaged latest is kept as evidence and will not be rotated over the good .prev.
            let listing = stateListing(dir.path)
            #expect(listing.count == 2)
            #expect(listing.contains("state.ckpt.prev"))
            #expect(listing.contains { $0.hasPrefix("state.ckpt.corrupt-") })
            try store.write(stateSampleCheckpoint(sequence: store.nextSequence))
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt.prev")) == first)
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt")).sequence == 2)
        }
    }

    @Test("both generations corrupt: fail names both, reset moves both aside")
    func bothCorrupt() throws {
        try withStateTempDirectory { dir in
            let writer = StateStore(directory: dir.path)
            try writer.write(stateSampleCheckpoint(sequence: 1))
            try writer.write(stateSampleCheckpoint(sequence: 2))
            try stateWriteFile([1, 2, 3], dir.file("state.ckpt"))
            let previous = try stateReadFile(dir.file("state.ckpt.prev"))
            try stateWriteFile(Array(previous.dropLast()), dir.file("state.ckpt.prev"))

            #expect {
                _ = try StateStore(directory: dir.path).loadApplying(.fail)
            } throws: { error in
                let error = error as! StateError
                return error.code == "state.bad_magic" && error.hint.contains("state.ckpt.prev is unusable too")
            }
            let result = try StateStore(directory: dir.path).loadApplying(.reset)
            guard case .reset(_, let moved) = result else {
                Issue.record("expected reset, got \(result)")
                return
            }
            #expect(moved.count == 2)
            #expect(stateListing(dir.path).allSatisfy { $0.contains(".corrupt-") })
        }
    }

    @Test("a write without a prior load never rotates a damaged latest over a good .prev")
    func untrustedLatest() throws {
        try withStateTempDirectory { dir in
            let writer = StateStore(directory: dir.path)
            let first = stateSampleCheckpoint(sequence: 1)
            try writer.write(first)
            try writer.write(stateSampleCheckpoint(sequence: 2))
            try stateWriteFile(Array("junk".utf8), dir.file("state.ckpt"))

            try StateStore(directory: dir.path).write(stateSampleCheckpoint(sequence: 3))
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt.prev")) == first)
            #expect(try StateCheckpoint.read(from: dir.file("state.ckpt")).sequence == 3)
            #expect(stateListing(dir.path).contains { $0.hasPrefix("state.ckpt.corrupt-") })
        }
    }

    @Test("a missing latest with a .prev present restores .prev and says so")
    func missingLatest() throws {
        try withStateTempDirectory { dir in
            let writer = StateStore(directory: dir.path)
            try writer.write(stateSampleCheckpoint(sequence: 1))
            try writer.write(stateSampleCheckpoint(sequence: 2))
            try FileManager.default.removeItem(atPath: dir.file("state.ckpt"))
            let result = try StateStore(directory: dir.path).load()
            guard case .recovered(let restored, _, let skipped) = result else {
                Issue.record("expected recovered, got \(result)")
                return
            }
            #expect(restored.sequence == 1)
            #expect(skipped.kind == .missing)
        }
    }

    @Test("an unreadable checkpoint is an I/O error, not corruption: reset does not touch it")
    func ioErrorIsNotCorruption() throws {
        try withStateTempDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir.file("state.ckpt"), withIntermediateDirectories: false)
            #expect {
                _ = try StateStore(directory: dir.path).loadApplying(.reset)
            } throws: { error in
                let error = error as! StateError
                return error.code == "state.io_failed" && !error.isCorruption && error.reason.contains("EISDIR")
            }
            #expect(stateListing(dir.path) == ["state.ckpt"])
        }
    }
}
