import Foundation

// MARK: - safetensors

/// One named F32 tensor of a safetensors file.
public struct SafeTensor: Sendable, Equatable {
    /// Tensor name, e.g. `trunk.0.weight`.
    public var name: String
    /// Shape, outermost first (`[out, in]` for a dense weight).
    public var shape: [Int]
    /// Row-major values; `values.count` equals the product of `shape`.
    public var values: [Float]

    /// Creates a tensor; the value count must match the shape.
    public init(name: String, shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "SafeTensor: value count must equal the shape's product")
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// Reader and writer of the safetensors format (Hugging Face; loaded by PyTorch, NumPy, JAX and others).
///
/// Layout: an 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON
/// `{"__metadata__": {string: string}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}`
/// padded with spaces to a multiple of 8; then the tensor bytes, little-endian, where offsets are relative to
/// the start of this byte buffer. Tensors are written contiguously in the given order. Only F32 is supported.
public enum SafeTensors {
    /// The largest header this reader accepts (100 MB, as the reference implementation).
    public static let maximumHeaderLength = 100_000_000

    /// Encodes tensors and string metadata into a safetensors byte buffer. Tensor names must be unique and must
    /// not be `__metadata__`.
    public static func encode(_ tensors: [SafeTensor], metadata: [String: String]) -> [UInt8] {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let entries = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{" + entries.joined(separator: ",") + "}")
        }
        var offset = 0
        var seen = Set<String>()
        for t in tensors {
            precondition(t.name != "__metadata__" && seen.insert(t.name).inserted, "SafeTensors: bad or duplicate name")
            let end = offset + 4 * t.values.count
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\(jsonString(t.name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while (headerBytes.count % 8) != 0 { headerBytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for t in tensors {
            for v in t.values {
                withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) }
            }
        }
        return out
    }

    /// Decodes a safetensors buffer (F32 tensors only), returning tensors in data order and the metadata.
    /// Throws ``StudentError`` (`student.invalid_checkpoint`) naming the part at fault.
    public static func decode(_ bytes: [UInt8]) throws -> (tensors: [SafeTensor], metadata: [String: String]) {
        guard bytes.count >= 8 else { throw StudentError.checkpoint("header_length", "buffer shorter than 8 bytes") }
        var n: UInt64 = 0
        for k in 0..<8 { n |= UInt64(bytes[k]) << (8 * UInt64(k)) }
        guard n <= UInt64(maximumHeaderLength), Int(n) <= bytes.count - 8 else {
            throw StudentError.checkpoint("header_length", "header length \(n) exceeds the buffer or the 100 MB limit")
        }
        let headerEnd = 8 + Int(n)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<headerEnd]))
        } catch {
            throw StudentError.checkpoint("header", "header is not valid JSON: \(error.localizedDescription)")
        }
        guard let object = json as? [String: Any] else { throw StudentError.checkpoint("header", "not a JSON object") }
        var metadata: [String: String] = [:]
        var entries: [(name: String, shape: [Int], begin: Int, end: Int)] = []
        for (key, value) in object {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw StudentError.checkpoint("__metadata__", "must be an object of strings")
                }
                for (mk, mv) in m {
                    guard let s = mv as? String else {
                        throw StudentError.checkpoint("__metadata__.\(mk)", "metadata values must be strings")
                    }
                    metadata[mk] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw StudentError.checkpoint(key, "not an object") }
            guard let dtype = info["dtype"] as? String else { throw StudentError.checkpoint(key + ".dtype", "missing") }
            guard dtype == "F32" else {
                throw StudentError.checkpoint(key + ".dtype", "dtype \(dtype) is not supported (only F32)")
            }
            guard let shapeAny = info["shape"] as? [Any], let offsets = info["data_offsets"] as? [Any],
                offsets.count == 2
            else { throw StudentError.checkpoint(key, "needs shape and two data_offsets") }
            let shape = try shapeAny.map { try integer($0, field: key + ".shape") }
            let begin = try integer(offsets[0], field: key + ".data_offsets")
            let end = try integer(offsets[1], field: key + ".data_offsets")
            guard shape.allSatisfy({ $0 >= 0 }), begin >= 0, end >= begin else {
                throw StudentError.checkpoint(key, "negative shape or inverted offsets")
            }
            let count = shape.reduce(1, *)
            guard end - begin == 4 * count else {
                throw StudentError.checkpoint(key + ".data_offsets", "byte length \(end - begin) ≠ 4 × \(count)")
            }
            entries.append((key, shape, begin, end))
        }
        entries.sort { ($0.begin, $0.name) < ($1.begin, $1.name) }
        let dataLength = bytes.count - headerEnd
        var expected = 0
        for e in entries {
            guard e.begin == expected else {
                throw StudentError.checkpoint(
                    e.name + ".data_offsets", "tensors overlap or leave a gap at byte \(expected)")
            }
            expected = e.end
        }
        guard expected == dataLength else {
            throw StudentError.checkpoint("data", "data is \(dataLength) bytes but tensors cover \(expected)")
        }
        let tensors = entries.map { e -> SafeTensor in
            let count = (e.end - e.begin) / 4
            var values = [Float](repeating: 0, count: count)
            var p = headerEnd + e.begin
            for i in 0..<count {
                let bits =
                    UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16
                    | UInt32(bytes[p + 3]) << 24
                values[i] = Float(bitPattern: bits)
                p += 4
            }
            return SafeTensor(name: e.name, shape: e.shape, values: values)
        }
        return (tensors, metadata)
    }

    static func integer(_ any: Any, field: String) throws -> Int {
        if let i = any as? Int { return i }
        if let d = any as? Double, d == d.rounded(), abs(d) < 9e15 { return Int(d) }
        throw StudentError.checkpoint(field, "expected an integer")
    }

    /// A JSON string literal with the required escapes.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
