import Foundation

// MARK: - Packed number arrays for checkpoints

/// Arrays of fixed-width numbers stored as one `Data` of their little-endian bytes.
///
/// A window set holds hundreds of thousands of sums; as JSON numbers each one is a node to build, format and parse,
/// which made checkpoints stall the pipeline for seconds. Packed, an array is one value: exact (bit patterns, NaN
/// and −0 included) and an order of magnitude cheaper to encode and decode. The state's binary encoder writes the
/// bytes as they are; `JSONEncoder` writes them as a base64 string (its default for `Data`), which is what this
/// wrote for every encoder until 2026-12-07, so checkpoints of either kind from before then still decode.
enum PackedNumbers {
    static func data<T: BitwiseCopyable>(_ values: [T]) -> Data {
        values.withUnsafeBytes { Data($0) }
    }

    /// The numbers in `data`, or nil when it is not a whole number of `T`.
    static func values<T: BitwiseCopyable>(_ data: Data, as: T.Type) -> [T]? {
        guard data.count % MemoryLayout<T>.stride == 0 else { return nil }
        let count = data.count / MemoryLayout<T>.stride
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            data.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
            }
            initialized = count
        }
    }

    /// The numbers of a base64 string, as written before 2026-12-07, or nil when it is not one.
    static func values<T: BitwiseCopyable>(base64 text: String, as: T.Type) -> [T]? {
        Data(base64Encoded: text).flatMap { values($0, as: T.self) }
    }
}

extension KeyedEncodingContainer {
    /// Encodes `values` packed (see `PackedNumbers`).
    mutating func encodePacked<T: BitwiseCopyable>(_ values: [T], forKey key: Key) throws {
        try encode(PackedNumbers.data(values), forKey: key)
    }
}

extension KeyedDecodingContainer {
    /// Decodes an array written by `encodePacked`, or by its base64-string form of before 2026-12-07.
    func decodePacked<T: BitwiseCopyable>(_ type: T.Type, forKey key: Key) throws -> [T] {
        let values: [T]?
        if let data = try? decode(Data.self, forKey: key) {
            values = PackedNumbers.values(data, as: T.self)
        } else {
            values = PackedNumbers.values(base64: try decode(String.self, forKey: key), as: T.self)
        }
        guard let values else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self,
                                                   debugDescription: "not a packed array of \(T.self)")
        }
        return values
    }
}
