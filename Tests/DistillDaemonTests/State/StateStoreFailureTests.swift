import DistillDaemon
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Read-only and full state directories (issue 7)

@Suite("StateStore unwritable state directory")
struct StateStoreUnwritableTests {
    /// The daemon's rule in miniature: offsets are committed only when `write` returned.
    private struct Committer {
        var committed: [StateTopicPartition: Int64] = [:]

        mutating func checkpointThenCommit(_ store: StateStore, _ checkpoint: StateCheckpoint) -> StateError? {
            do {
                try store.write(checkpoint)
                committed = checkpoint.offsets
                return nil
            } catch {
                return error as? StateError
            }
        }
    }

    @Test("a read-only directory: clear error, previous checkpoint intact, nothing committed")
    func readOnlyDirectory() throws {
        try withStateTempDirectory { dir in
            let store = StateStore(directory: dir.path)
            var committer = Committer()
            #expect(committer.checkpointThenCommit(store, stateSampleCheckpoint(sequence: 1)) == nil)
            let before = try stateReadFile(dir.file("state.ckpt"))

            // Root ignores mode bits, so as root the directory is made immutable (chattr +i) instead.
            let protection = try ReadOnlyDirectory(dir.path)
            defer { protection.undo() }
            guard protection.isEffective else {
                print("StateStoreUnwritableTests.readOnlyDirectory: skipped, \(protection.method) had no effect here")
                return
            }

            let error = committer.checkpointThenCommit(store, stateSampleCheckpoint(sequence: 2))
            #expect(error?.code == "state.permission_denied", "\(protection.method): \(String(describing: error))")
            #expect(error?.path == dir.file("state.ckpt.tmp"))
            #expect(error?.reason.contains(protection.expectedErrnoName) == true)
            #expect(error?.hint.contains("Offsets are not committed") == true)
            #expect(committer.committed == stateSampleCheckpoint(sequence: 1).offsets)
            #expect(store.metrics.lastError == error)
            protection.undo()
            #expect(try stateReadFile(dir.file("state.ckpt")) == before)
            #expect(stateListing(dir.path) == ["state.ckpt"])
            #expect(try StateStore(directory: dir.path).load().checkpoint?.sequence == 1)
            print("StateStoreUnwritableTests.readOnlyDirectory: \(protection.method) -> \(String(describing: error))")
        }
    }

    @Test("a state directory path that cannot be a directory (parent is a regular file)")
    func parentIsAFile() throws {
        try withStateTempDirectory { dir in
            try stateWriteFile([0], dir.file("plain-file"))
            let store = StateStore(directory: dir.file("plain-file/state"))
            #expect {
                try store.write(stateSampleCheckpoint(sequence: 1))
            } throws: { error in
                let error = error as! StateError
                return error.code == "state.io_failed" && error.reason.contains("ENOTDIR")
                    && error.path == dir.file("plain-file")
            }
            #expect(store.metrics.writeFailures == 1)
            // Restoring from there is a reported misconfiguration, not a silent fresh start.
            #expect {
                _ = try store.loadApplying(.reset)
            } throws: { ($0 as? StateError)?.reason.contains("ENOTDIR") == true }
        }
    }

    @Test(
        "disk full (ENOSPC) at byte N: typed error, temp removed, previous intact",
        arguments: [0, 1, 19, 20, 500, 4096])
    func diskFull(_ budget: Int) throws {
        try withStateTempDirectory { dir in
            let first = stateSampleCheckpoint(sequence: 1, sectionSize: 4096)
            try StateStore(directory: dir.path).write(first)

            let io = StateFaultyFileIO(.init(writeBudget: budget, budgetErrno: ENOSPC, maximumWriteChunk: 333))
            let store = StateStore(directory: dir.path, io: io)
            var committer = Committer()
            let error = committer.checkpointThenCommit(store, stateSampleCheckpoint(sequence: 2, sectionSize: 4096))
            #expect(error?.code == "state.no_space")
            #expect(error?.kind == .io(operation: "write", errno: ENOSPC))
            #expect(error?.reason == "write failed: ENOSPC (No space left on device)")
            #expect(error?.path == dir.file("state.ckpt.tmp"))
            #expect(committer.committed.isEmpty)
            #expect(stateListing(dir.path) == ["state.ckpt"])
            #expect(try StateStore(directory: dir.path).load() == .loaded(first, path: dir.file("state.ckpt")))
            #expect(!io.calls.contains("rename"))
        }
    }

    @Test("failures at open, fsync, link, rename and directory fsync map to clear codes", arguments: [
        ("open", EROFS, "state.read_only"), ("open", EACCES, "state.permission_denied"),
        ("fsync", EIO, "state.io_failed"), ("fsync", ENOSPC, "state.no_space"),
        ("link", ENOSPC, "state.no_space"), ("rename", EIO, "state.io_failed"),
        ("fsyncDirectory", EIO, "state.io_failed"),
    ])
    func injectedFailures(_ call: String, _ code: Int32, _ expected: String) throws {
        try withStateTempDirectory { dir in
            let first = stateSampleCheckpoint(sequence: 1)
            try StateStore(directory: dir.path).write(first)
            let io = StateFaultyFileIO(.init(failCall: call, failCallErrno: code))
            let store = StateStore(directory: dir.path, io: io)
            #expect {
                try store.write(stateSampleCheckpoint(sequence: 2))
            } throws: { error in
                let error = error as! StateError
                return error.code == expected && error.reason.contains(String(cString: strerror(code)))
            }
            #expect(store.metrics.writeFailures == 1)
            #expect(store.metrics.writes == 0)
            // Whatever step failed, a complete checkpoint restores: the old one, or (after the rename) the new one.
            let restored = try StateStore(directory: dir.path).load().checkpoint
            if call == "fsyncDirectory" {
                #expect(restored == stateSampleCheckpoint(sequence: 2))
            } else {
                #expect(restored == first)
            }
            #expect(!stateListing(dir.path).contains("state.ckpt.tmp"))
        }
    }
}

/// Makes a directory unwritable: mode 0555 for ordinary users, the immutable flag for root.
private struct ReadOnlyDirectory {
    let path: String
    let method: String
    let expectedErrnoName: String
    let isEffective: Bool

    init(_ path: String) throws {
        self.path = path
        if geteuid() != 0 {
            method = "chmod 0555"
            expectedErrnoName = "EACCES"
            chmod(path, 0o555)
        } else {
            method = "chattr +i (running as root)"
            expectedErrnoName = "EPERM"
            _ = Self.setImmutable(path, true)
        }
        // Probe: can a file be created now?
        let probe = "\(path)/.probe"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        if fd >= 0 {
            close(fd)
            unlink(probe)
        }
        isEffective = fd < 0
    }

    func undo() {
        if geteuid() != 0 { chmod(path, 0o755) } else { _ = Self.setImmutable(path, false) }
    }

    /// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS with FS_IMMUTABLE_FL, what `chattr +i` does.
    private static func setImmutable(_ path: String, _ on: Bool) -> Bool {
        let getFlags: UInt = 0x8008_6601
        let setFlags: UInt = 0x4008_6602
        let immutable: Int32 = 0x10
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var flags: Int32 = 0
        guard ioctl(fd, getFlags, &flags) == 0 else { return false }
        flags = on ? flags | immutable : flags & ~immutable
        return ioctl(fd, setFlags, &flags) == 0
    }
}

// MARK: - Crash between steps (issue 7)

@Suite("StateStore crash safety")
struct StateStoreCrashTests {
    /// The seam calls of one clean write over an existing checkpoint.
    private func cleanWriteCalls(
        old: StateCheckpoint = stateSampleCheckpoint(sequence: 1),
        new: StateCheckpoint = stateSampleCheckpoint(sequence: 2),
        chunk: Int? = nil
    ) throws -> [String] {
        try withStateTempDirectory("crash-probe") { dir in
            try StateStore(directory: dir.path).write(old)
            let io = StateFaultyFileIO(.init(maximumWriteChunk: chunk))
            let store = StateStore(directory: dir.path, io: io)
            _ = try store.load()
            try store.write(new)
            return io.calls
        }
    }

    @Test("the write's steps are: write temp, fsync, close, link .prev, rename, rename, fsync directory")
    func stepOrder() throws {
        let calls = try cleanWriteCalls()
        #expect(calls == ["open", "write", "fsync", "close", "unlink", "link", "rename", "rename", "fsyncDirectory"])
    }

    @Test(
        "a crash (process kill or power loss) before any step leaves the old or the new checkpoint, never a mix",
        arguments: [false, true])
    func crashAtEveryStep(powerLoss: Bool) throws {
        let old = stateSampleCheckpoint(sequence: 1, sectionSize: 3000)
        let new = stateSampleCheckpoint(sequence: 2, sectionSize: 3000)
        // Small write chunks so a crash between writes leaves a torn temp file.
        let steps = try cleanWriteCalls(old: old, new: new, chunk: 1000)
        #expect(steps.filter { $0 == "write" }.count == 5)
        var outcomes: [String] = []
        for crashPoint in 0...steps.count {
            try withStateTempDirectory("crash") { dir in
                try StateStore(directory: dir.path).write(old)
                let io = StateFaultyFileIO(
                    .init(crashBeforeCall: crashPoint, maximumWriteChunk: 1000, powerLoss: powerLoss))
                let dying = StateStore(directory: dir.path, io: io)
                _ = try dying.load()
                var acknowledged = false
                do {
                    try dying.write(new)
                    acknowledged = true
                } catch is StateSimulatedCrash {
                    #expect(io.crashed)
                }
                io.reap()

                let restarted = StateStore(directory: dir.path)
                let restored = try restarted.load()
                let label = crashPoint < steps.count ? "before \(steps[crashPoint]) #\(crashPoint)" : "after all steps"
                // `.loaded`, not `.recovered`: the latest name always holds a complete checkpoint.
                guard case .loaded(let checkpoint, _) = restored else {
                    Issue.record("\(label): \(restored)")
                    return
                }
                #expect(checkpoint == old || checkpoint == new, "\(label)")
                if acknowledged {
                    #expect(restored.checkpoint == new, "acknowledged write must survive: \(label)")
                }
                outcomes.append("\(label): seq \(restored.checkpoint?.sequence ?? 0)")
                // The next incarnation writes over whatever was left (stale temp files included).
                let next = restarted.nextSequence
                try restarted.write(stateSampleCheckpoint(sequence: next))
                #expect(try StateStore(directory: dir.path).load().checkpoint == stateSampleCheckpoint(sequence: next))
                #expect(!stateListing(dir.path).contains("state.ckpt.tmp"))
            }
        }
        print("StateStoreCrashTests (power loss: \(powerLoss)): \(outcomes.joined(separator: "; "))")
        #expect(outcomes.count == steps.count + 1)
    }
}

// MARK: - Size and timing

@Suite("StateStore timing")
struct StateStoreTimingTests {
    @Test("write+fsync and verified read of 1 MB and 50 MB checkpoints (printed, not asserted)")
    func timing() throws {
        try withStateTempDirectory("timing") { dir in
            let store = StateStore(directory: dir.path)
            var sequence: UInt64 = 0
            for megabytes in [1, 50] {
                let size = megabytes * 1024 * 1024
                var section = [UInt8](repeating: 0, count: size)
                for index in stride(from: 0, to: size, by: 4096) {
                    section[index] = UInt8(truncatingIfNeeded: index >> 12)
                }
                sequence += 1
                let checkpoint = StateCheckpoint(
                    sequence: sequence, createdAtMilliseconds: 0, configRevision: "r", writerVersion: "v",
                    offsets: [StateTopicPartition(topic: "samples", partition: 0): 1],
                    sections: [StateSection(name: "student.weights", bytes: section)])
                let receipt = try store.write(checkpoint)
                let clock = ContinuousClock()
                var restored: StateCheckpoint?
                let readTime = try clock.measure { restored = try StateCheckpoint.read(from: receipt.path) }
                #expect(restored?.section(named: "student.weights")?.count == size)
                #expect(restored?.section(named: "student.weights") == section)
                print("StateStore timing: \(megabytes) MB write+fsync \(receipt.duration), verified read \(readTime)")
            }
        }
    }
}
