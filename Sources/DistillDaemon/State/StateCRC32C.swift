// MARK: - CRC-32C

/// Streaming CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`), the checksum of every checkpoint file.
///
/// Computed with slicing-by-8 tables so a 50 MB checkpoint is checksummed in one linear pass while it is read
/// or written, chunk by chunk. Check value: `CRC-32C("123456789") == 0xE3069283` (RFC 3720, appendix B.4).
public struct StateCRC32C: Sendable, Equatable {
    /// The running register, pre-inverted as the algorithm requires.
    private var register: UInt32 = 0xFFFF_FFFF

    /// A checksum of zero bytes so far.
    public init() {}

    /// The checksum of everything passed to `update` so far.
    public var value: UInt32 { register ^ 0xFFFF_FFFF }

    /// Feeds `bytes` into the checksum.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        register = Self.advance(register, bytes)
    }

    /// Feeds `bytes` into the checksum.
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBytes { update($0) }
        }
    }

    /// The CRC-32C of `bytes` in one call.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc = StateCRC32C()
        crc.update(bytes)
        return crc.value
    }

    /// Corrects the checksum for bytes overwritten after they were fed: `patch` took the place of as many zero
    /// bytes whose last one was fed `bytesAfter` bytes before the end.
    ///
    /// The register update is linear over GF(2) in the register and the data together, so changing data by D
    /// changes the register by the update of D alone from a zero register, followed by `bytesAfter` zero bytes
    /// (zlib's `crc32_combine` uses the same operator). Lets a checkpoint be checksummed as it streams, though some
    /// of its lengths are only known later.
    public mutating func overwriteZeros(with patch: some Sequence<UInt8>, bytesAfter: Int) {
        precondition(bytesAfter >= 0)
        var delta: UInt32 = 0
        let bytes = Array(patch)
        bytes.withUnsafeBytes { delta = Self.advance(0, $0) }
        register ^= Self.zeros(delta, count: bytesAfter)
    }

    /// `register` after `count` zero bytes, in about log₂(count) matrix-vector products.
    static func zeros(_ register: UInt32, count: Int) -> UInt32 {
        var r = register
        var n = count
        var power = 0
        while n != 0 {
            if n & 1 != 0 { r = Self.apply(Self.zeroOperators[power], r) }
            n >>= 1
            power += 1
        }
        return r
    }

    /// Operator `k` (32 columns) advances a register over 2^k zero bytes.
    private static let zeroOperators: [[UInt32]] = {
        // One zero bit: shift right, folding the polynomial in when the low bit falls out.
        var bit = [UInt32](repeating: 0, count: 32)
        bit[0] = 0x82F6_3B78
        for i in 1..<32 { bit[i] = 1 << (i - 1) }
        var op = bit
        for _ in 0..<3 { op = square(op) }  // 8 bits
        var operators = [op]
        for _ in 1..<62 {
            op = square(op)
            operators.append(op)
        }
        return operators
    }()

    private static func apply(_ matrix: [UInt32], _ vector: UInt32) -> UInt32 {
        var sum: UInt32 = 0
        var v = vector
        var i = 0
        while v != 0 {
            if v & 1 != 0 { sum ^= matrix[i] }
            v >>= 1
            i += 1
        }
        return sum
    }

    private static func square(_ matrix: [UInt32]) -> [UInt32] { matrix.map { apply(matrix, $0) } }

    // MARK: - Tables

    /// 8 × 256 entries; table `k` maps a byte to its CRC after `k` further zero bytes. Leaked on purpose:
    /// a raw pointer keeps the hot loop free of array bounds checks and retain/release in debug builds.
    /// `nonisolated(unsafe)` is sound: filled once by the lazy initializer, read-only afterwards.
    nonisolated(unsafe) private static let table: UnsafePointer<UInt32> = {
        let polynomial: UInt32 = 0x82F6_3B78
        let table = UnsafeMutablePointer<UInt32>.allocate(capacity: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1
            }
            table[byte] = crc
        }
        for slice in 1..<8 {
            for byte in 0..<256 {
                let previous = table[(slice - 1) * 256 + byte]
                table[slice * 256 + byte] = (previous >> 8) ^ table[Int(previous & 0xFF)]
            }
        }
        return UnsafePointer(table)
    }()

    private static func advance(_ start: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return start }
        let t = table
        var crc = start
        var index = 0
        let count = bytes.count
        // Slicing-by-8: two little-endian words per step.
        while count - index >= 8 {
            let low = base.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian ^ crc
            let high = base.loadUnaligned(fromByteOffset: index &+ 4, as: UInt32.self).littleEndian
            crc = t[7 * 256 + Int(low & 0xFF)]
                ^ t[6 * 256 + Int((low >> 8) & 0xFF)]
                ^ t[5 * 256 + Int((low >> 16) & 0xFF)]
                ^ t[4 * 256 + Int(low >> 24)]
                ^ t[3 * 256 + Int(high & 0xFF)]
                ^ t[2 * 256 + Int((high >> 8) & 0xFF)]
                ^ t[1 * 256 + Int((high >> 16) & 0xFF)]
                ^ t[Int(high >> 24)]
            index &+= 8
        }
        while index < count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            crc = (crc >> 8) ^ t[Int((crc ^ UInt32(byte)) & 0xFF)]
            index &+= 1
        }
        return crc
    }
}
