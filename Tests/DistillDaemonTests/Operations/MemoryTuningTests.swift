import Foundation
import Testing

@testable import DistillDaemon

@Suite("Process tuning")
struct MemoryTuningTests {
    @Test("glibc's mallopt is found and accepts the fixed mmap and trim thresholds")
    func applies() {
        #if os(Linux)
        #expect(MemoryTuning.apply())
        #else
        #expect(!MemoryTuning.apply())
        #endif
    }

    #if os(Linux)
    /// This thread's niceness.
    static func niceness() -> Int32 {
        let gettid = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gettid")!,
                                   to: (@convention(c) () -> Int32).self)
        return getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(gettid()))
    }

    @Test("the checkpoint thread runs at niceness 10; the thread that starts it keeps its own")
    func checkpointThreadNiceness() async {
        let before = Self.niceness()
        let inside = await CheckpointWriter.onOwnThread { Self.niceness() }
        // Only a privileged process may lower a niceness above 10 (a CI run under `nice -n 19`, say).
        if before <= CheckpointWriter.checkpointNiceness { #expect(inside == CheckpointWriter.checkpointNiceness) }
        #expect(Self.niceness() == before)
    }
    #endif
}
