import DistillDaemon
import Testing

@Suite("Memory tuning")
struct MemoryTuningTests {
    @Test("glibc's mallopt is found and accepts the fixed mmap and trim thresholds")
    func applies() {
        #if os(Linux)
        #expect(MemoryTuning.apply())
        #else
        #expect(!MemoryTuning.apply())
        #endif
    }
}
