import Foundation

// MARK: - StateBinaryDecoder

/// Decodes a value written by ``StateBinaryEncoder``. Every read is bounds-checked: a damaged state throws
/// `DecodingError`, never traps.
struct StateBinaryDecoder {
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        guard StateBinary.recognizes(bytes) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not a StateBinary value"))
        }
        let source = try StateBinarySource(bytes)
        var at = StateBinary.magic.count
        let value = try source.value(at: &at, end: source.valueEnd, codingPath: [])
        guard at == source.valueEnd else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(bytes.count - at) bytes "
                                                    + "after the value"))
        }
        return try source.decode(type, value, codingPath: [])
    }
}

/// One encoded value: its tag and where its payload starts and ends.
struct StateBinaryValue {
    let tag: StateBinary.Tag
    let start: Int
    let end: Int
}

final class StateBinarySource {
    let bytes: [UInt8]
    /// Where the value ends and the key table starts.
    let valueEnd: Int
    /// Key numbers by key string.
    private(set) var keyNumbers: [String: Int]

    init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        let bad = DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "bad key table"))
        guard bytes.count >= StateBinary.magic.count + 8 else { throw bad }
        var offset: UInt64 = 0
        for i in 0..<8 { offset |= UInt64(bytes[bytes.count - 8 + i]) << (8 * i) }
        let tableEnd = bytes.count - 8
        guard offset >= UInt64(StateBinary.magic.count), offset <= UInt64(tableEnd) else { throw bad }
        valueEnd = Int(offset)
        keyNumbers = [:]
        var at = valueEnd
        let count = try varint(at: &at, end: tableEnd, [])
        guard count <= UInt64(tableEnd - at) else { throw bad }
        var numbers: [String: Int] = [:]
        for n in 0..<Int(count) {
            let length = try varint(at: &at, end: tableEnd, [])
            guard length <= UInt64(tableEnd - at) else { throw bad }
            numbers[try utf8(at, at + Int(length), [])] = n
            at += Int(length)
        }
        guard at == tableEnd else { throw bad }
        keyNumbers = numbers
    }

    func corrupt(_ path: [any CodingKey], _ what: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: path, debugDescription: what))
    }

    func varint(at: inout Int, end: Int, _ path: [any CodingKey]) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard at < end, shift < 64 else { throw corrupt(path, "bad varint") }
            let byte = bytes[at]
            at += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    /// Reads the value at `at` and moves past it.
    func value(at: inout Int, end: Int? = nil, codingPath path: [any CodingKey]) throws -> StateBinaryValue {
        let end = end ?? bytes.count
        guard at < end, let tag = StateBinary.Tag(rawValue: bytes[at]) else { throw corrupt(path, "bad tag") }
        at += 1
        let start = at
        func skip(_ n: Int) throws {
            guard n >= 0, n <= end - at else { throw corrupt(path, "value runs past its container") }
            at += n
        }
        switch tag {
        case .null, .bool0, .bool1: break
        case .int, .uint: _ = try varint(at: &at, end: end, path)
        case .float: try skip(4)
        case .double: try skip(8)
        case .string, .bytes:
            let n = try varint(at: &at, end: end, path)
            guard n <= UInt64(Int.max) else { throw corrupt(path, "bad length") }
            let payload = at
            try skip(Int(n))
            return StateBinaryValue(tag: tag, start: payload, end: at)
        case .keyed, .unkeyed:
            guard end - at >= 4 else { throw corrupt(path, "truncated container") }
            let n = Int(UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16
                        | UInt32(bytes[at + 3]) << 24)
            at += 4
            let payload = at
            try skip(n)
            return StateBinaryValue(tag: tag, start: payload, end: at)
        }
        return StateBinaryValue(tag: tag, start: start, end: at)
    }

    func string(_ v: StateBinaryValue, _ path: [any CodingKey]) throws -> String {
        guard v.tag == .string else { throw mismatch(String.self, v, path) }
        return try utf8(v.start, v.end, path)
    }

    func utf8(_ start: Int, _ end: Int, _ path: [any CodingKey]) throws -> String {
        guard let s = String(validating: bytes[start..<end], as: UTF8.self) else { throw corrupt(path, "bad UTF-8") }
        return s
    }

    func mismatch(_ type: Any.Type, _ v: StateBinaryValue, _ path: [any CodingKey]) -> DecodingError {
        .typeMismatch(type, .init(codingPath: path, debugDescription: "found \(v.tag)"))
    }

    func bool(_ v: StateBinaryValue, _ path: [any CodingKey]) throws -> Bool {
        switch v.tag {
        case .bool0: false
        case .bool1: true
        default: throw mismatch(Bool.self, v, path)
        }
    }

    func double(_ v: StateBinaryValue, _ path: [any CodingKey]) throws -> Double {
        switch v.tag {
        case .double: Double(bitPattern: load(UInt64.self, v.start))
        case .float: Double(Float(bitPattern: load(UInt32.self, v.start)))
        default: throw mismatch(Double.self, v, path)
        }
    }

    func float(_ v: StateBinaryValue, _ path: [any CodingKey]) throws -> Float {
        guard v.tag == .float else { throw mismatch(Float.self, v, path) }
        return Float(bitPattern: load(UInt32.self, v.start))
    }

    private func load<T: FixedWidthInteger>(_: T.Type, _ at: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(bytes[at + i]) << (8 * i) }
        return value
    }

    func integer<I: FixedWidthInteger>(_ type: I.Type, _ v: StateBinaryValue, _ path: [any CodingKey]) throws -> I {
        var at = v.start
        switch v.tag {
        case .int:
            let raw = try varint(at: &at, end: v.end, path)
            let value = Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
            guard let exact = I(exactly: value) else { throw corrupt(path, "\(value) does not fit \(I.self)") }
            return exact
        case .uint:
            let value = try varint(at: &at, end: v.end, path)
            guard let exact = I(exactly: value) else { throw corrupt(path, "\(value) does not fit \(I.self)") }
            return exact
        default:
            throw mismatch(I.self, v, path)
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ v: StateBinaryValue, codingPath: [any CodingKey]) throws -> T {
        if type == Data.self {
            guard v.tag == .bytes else { throw mismatch(Data.self, v, codingPath) }
            return Data(bytes[v.start..<v.end]) as! T
        }
        return try T(from: StateBinaryValueDecoder(source: self, value: v, codingPath: codingPath))
    }
}

// MARK: - Decoder

struct StateBinaryValueDecoder: Decoder {
    let source: StateBinarySource
    let value: StateBinaryValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard value.tag == .keyed else { throw source.mismatch([String: Any].self, value, codingPath) }
        return KeyedDecodingContainer(try StateBinaryKeyedDecoder<Key>(source: source, value: value,
                                                                       codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard value.tag == .unkeyed else { throw source.mismatch([Any].self, value, codingPath) }
        return StateBinaryUnkeyedDecoder(source: source, value: value, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        StateBinarySingleDecoder(source: source, value: value, codingPath: codingPath)
    }
}

struct StateBinaryKeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let source: StateBinarySource
    let codingPath: [any CodingKey]
    /// Values by key number.
    private let entries: [Int: StateBinaryValue]

    init(source: StateBinarySource, value: StateBinaryValue, codingPath: [any CodingKey]) throws {
        self.source = source
        self.codingPath = codingPath
        var entries: [Int: StateBinaryValue] = [:]
        var at = value.start
        while at < value.end {
            let n = try source.varint(at: &at, end: value.end, codingPath)
            guard n < UInt64(source.keyNumbers.count) else { throw source.corrupt(codingPath, "bad key number") }
            entries[Int(n)] = try source.value(at: &at, end: value.end, codingPath: codingPath)
        }
        self.entries = entries
    }

    var allKeys: [Key] {
        source.keyNumbers.compactMap { entries[$0.value] == nil ? nil : Key(stringValue: $0.key) }
    }
    func contains(_ key: Key) -> Bool { source.keyNumbers[key.stringValue].flatMap { entries[$0] } != nil }

    private func entry(_ key: Key) throws -> StateBinaryValue {
        guard let v = source.keyNumbers[key.stringValue].flatMap({ entries[$0] }) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing"))
        }
        return v
    }

    private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

    func decodeNil(forKey key: Key) throws -> Bool { try entry(key).tag == .null }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try source.bool(entry(key), path(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try source.string(entry(key), path(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try source.double(entry(key), path(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try source.float(entry(key), path(key)) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try source.integer(type, entry(key), path(key)) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try source.integer(type, entry(key), path(key))
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try source.integer(type, entry(key), path(key))
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try source.integer(type, entry(key), path(key))
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try source.decode(type, entry(key), codingPath: path(key))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey> {
        try StateBinaryValueDecoder(source: source, value: entry(key), codingPath: path(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try StateBinaryValueDecoder(source: source, value: entry(key), codingPath: path(key)).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { try superDecoder(forKey: Key(stringValue: "super")!) }
    func superDecoder(forKey key: Key) throws -> any Decoder {
        StateBinaryValueDecoder(source: source, value: try entry(key), codingPath: path(key))
    }
}

struct StateBinaryUnkeyedDecoder: UnkeyedDecodingContainer {
    let source: StateBinarySource
    let value: StateBinaryValue
    let codingPath: [any CodingKey]
    private var at: Int
    private(set) var currentIndex = 0

    init(source: StateBinarySource, value: StateBinaryValue, codingPath: [any CodingKey]) {
        self.source = source
        self.value = value
        self.codingPath = codingPath
        at = value.start
    }

    /// Unknown without a scan; `isAtEnd` is what decoders use.
    var count: Int? { nil }
    var isAtEnd: Bool { at >= value.end }

    private mutating func next() throws -> StateBinaryValue {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "at end"))
        }
        let v = try source.value(at: &at, end: value.end, codingPath: codingPath)
        currentIndex += 1
        return v
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        var peek = at
        let v = try source.value(at: &peek, end: value.end, codingPath: codingPath)
        guard v.tag == .null else { return false }
        at = peek
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try source.bool(next(), codingPath) }
    mutating func decode(_ type: String.Type) throws -> String { try source.string(next(), codingPath) }
    mutating func decode(_ type: Double.Type) throws -> Double { try source.double(next(), codingPath) }
    mutating func decode(_ type: Float.Type) throws -> Float { try source.float(next(), codingPath) }
    mutating func decode(_ type: Int.Type) throws -> Int { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try source.integer(type, next(), codingPath) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try source.integer(type, next(), codingPath) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try source.decode(type, next(), codingPath: codingPath)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey> {
        try StateBinaryValueDecoder(source: source, value: next(), codingPath: codingPath).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try StateBinaryValueDecoder(source: source, value: next(), codingPath: codingPath).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        StateBinaryValueDecoder(source: source, value: try next(), codingPath: codingPath)
    }
}

struct StateBinarySingleDecoder: SingleValueDecodingContainer {
    let source: StateBinarySource
    let value: StateBinaryValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool { value.tag == .null }
    func decode(_ type: Bool.Type) throws -> Bool { try source.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try source.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try source.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try source.float(value, codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try source.integer(type, value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try source.integer(type, value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try source.integer(type, value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try source.integer(type, value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try source.integer(type, value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try source.integer(type, value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try source.integer(type, value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try source.integer(type, value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try source.integer(type, value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try source.integer(type, value, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try source.decode(type, value, codingPath: codingPath) }
}
