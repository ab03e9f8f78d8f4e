// MARK: - Stable hashing (process-independent)
//
// Swift's `Hasher` is seeded per process, so it cannot make a replay reproduce identical bootstrap
// weights. These are fixed, documented functions.

/// Stable, process-independent 64-bit hashes and mixers.
public enum StableHash {
    /// FNV-1a 64-bit over `bytes` (offset basis 0xcbf29ce484222325, prime 0x100000001b3),
    /// finished with the SplitMix64 finaliser so that nearby ids give unrelated values.
    @inlinable
    public static func id<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return mix(h)
    }

    /// Hash of a string id (its UTF-8 bytes).
    @inlinable
    public static func id(_ string: String) -> UInt64 {
        var s = string
        return s.withUTF8 { id($0) }
    }

    /// The SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mixer.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// The `index`-th output of the SplitMix64 stream seeded with `seed` (index 0 is the first output).
    @inlinable
    public static func splitMix(seed: UInt64, index: UInt64) -> UInt64 {
        mix(seed &+ (index &+ 1) &* 0x9e37_79b9_7f4a_7c15)
    }
}
