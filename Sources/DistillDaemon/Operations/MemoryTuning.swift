#if canImport(Glibc)
import Glibc
#endif

// MARK: - MemoryTuning

/// Process-wide malloc settings for the daemon.
///
/// glibc raises its mmap threshold each time a large block is freed, up to 32 MiB, so the state checkpoint's
/// buffers and copy-on-write copies (tens of MB every `state.interval`) end up on the heap and stay resident after
/// they are freed. A fixed 1 MiB threshold maps every block that large on its own, and a 1 MiB trim threshold gives
/// freed heap tops back: in `distilld bench`'s `monitor` run the daemon then ended at 290–370 MB instead of 430–450 MB
/// (peak 440–520 against 600–610). The hot path allocates nothing that large, so it costs no system calls there.
public enum MemoryTuning {
    /// The threshold both settings use, bytes.
    public static let threshold: Int32 = 1 << 20

    /// Applies the settings; call once at start, before any thread is spawned. Returns false where they do not
    /// apply (no glibc `mallopt`).
    @discardableResult
    public static func apply() -> Bool {
        #if canImport(Glibc)
        // `malloc.h` is not in Swift's Glibc module; look the function up instead (absent outside glibc).
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        // glibc's <malloc.h>: M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3; mallopt returns 1 on success.
        return mallopt(-3, threshold) == 1 && mallopt(-1, threshold) == 1
        #else
        return false
        #endif
    }
}
