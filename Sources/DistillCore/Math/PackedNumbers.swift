import Foundation

// MARK: - Packed number arrays for checkpoints

/// Arrays of fixed-width numbers stored as one base64 string of their little-endian bytes.
///
/// A window set holds hundreds of thousands of sums; as JSON numbers each one is a node to build, format and parse,
/// which made checkpoints stall the pipeline for seconds. Packed, an array is one string: exact (bit patterns, NaN
/// and −0 included) and an order of magnitude cheaper to encode and decode.
enum PackedNumbers {
    static func encode<T: BitwiseCopyable>(_ values: [T]) -> String {
        values.withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// Decodes what `encode` wrote, or nil when the text is not base64 of a whole number of `T`.
    static func decode<T: BitwiseCopyable>(_ text: String, as: T.Type) -> [T]? {
        guard let data = Data(base64Encoded: text), data.count % MemoryLayout<T>.stride == 0 else { return nil }
        let count = data.count / MemoryLayout<T>.stride
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            data.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
            }
            initialized = count
        }
    }
}

extension KeyedEncodingContainer {
    /// Encodes `values` packed (see `PackedNumbers`).
    mutating func encodePacked<T: BitwiseCopyable>(_ values: [T], forKey key: Key) throws {
        try encode(PackedNumbers.encode(values), forKey: key)
    }
}

extension KeyedDecodingContainer {
    /// Decodes an array written by `encodePacked`.
    func decodePacked<T: BitwiseCopyable>(_ type: T.Type, forKey key: Key) throws -> [T] {
        guard let values = PackedNumbers.decode(try decode(String.self, forKey: key), as: T.self) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self,
                                                   debugDescription: "not a packed array of \(T.self)")
        }
        return values
    }
}
