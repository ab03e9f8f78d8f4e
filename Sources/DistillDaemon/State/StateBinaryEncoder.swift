import Foundation

// MARK: - StateBinary

/// A compact, self-describing binary form of `Codable` values, for the engine state in a checkpoint.
///
/// Why not JSON: `JSONEncoder` builds a tree of the whole state before writing a byte, and base64-encodes every
/// packed number array. For a 50 MB state that tree was several hundred MB of transient memory and seconds of CPU.
/// This writes straight into one buffer: numbers as varints or IEEE bytes, `Data` as raw bytes, containers as a
/// tag and a 4-byte length (patched when the container closes), so a decoder can skip what it does not read.
///
/// Layout: `DSTB` and a version byte, one value, the key table, and the key table's offset (8 bytes, little
/// endian). A value is a tag byte and its payload: nil · false · true · int (zigzag varint) · uint (varint) ·
/// float32 · float64 · string (varint length, UTF-8) · bytes (varint length, raw) · keyed container (length, then
/// key number / value pairs) · unkeyed container (length, then values). Key numbers index the key table (a varint
/// count, then strings), so a field name repeated in 50,000 entries costs a byte each, not its spelling.
enum StateBinary {
    static let magic: [UInt8] = Array("DSTB".utf8) + [2]

    enum Tag: UInt8 {
        case null = 0, bool0, bool1, int, uint, float, double, string, bytes, keyed, unkeyed
    }

    /// Whether `bytes` start like this format (and not like JSON).
    static func recognizes(_ bytes: [UInt8]) -> Bool { bytes.starts(with: magic) }
}

// MARK: - StateBinaryEncoder

/// Encodes a value in the ``StateBinary`` form.
struct StateBinaryEncoder {
    /// Bytes reserved up front for `encode(_:)`'s result.
    var capacity = 1 << 16

    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let sink = StateBinarySink()
        sink.bytes.reserveCapacity(max(capacity, 1 << 16))
        try sink.encodeDocument(value)
        return sink.bytes
    }

    /// Encodes `value` without holding it whole: every `spillBytes` or so the bytes so far go to `spill`, in order.
    ///
    /// A container's length is only known when it closes; for one whose placeholder has already been spilled the
    /// result lists a ``StateBinaryPatch`` to write over it. The caller applies them (the placeholders are zeros),
    /// so the bytes end up equal to `encode(value)`'s.
    func encode<T: Encodable>(
        _ value: T, spillBytes: Int = 1 << 20, spill: (UnsafeRawBufferPointer) throws -> Void
    ) throws -> (count: Int, patches: [StateBinaryPatch]) {
        try withoutActuallyEscaping(spill) { spill in
            let sink = StateBinarySink()
            sink.bytes.reserveCapacity(spillBytes + spillBytes / 4)
            sink.spillBytes = spillBytes
            sink.spill = spill
            defer { sink.spill = nil }  // `spill` must not outlive this call, even when it throws
            try sink.encodeDocument(value)
            try sink.spillBuffered()
            return (sink.position, sink.patches)
        }
    }
}

/// A byte string produced piece by piece while it is encoded, so a column of tens of MB is never held whole: the
/// ``StateBinary`` encoder writes each piece as it comes (the same bytes value as a `Data` of them all, so it decodes
/// as `Data`); any other encoder gets one `Data`.
struct StateBinaryStreamedBytes: Encodable {
    /// Bytes `pieces` produces in all.
    let count: Int
    /// Calls its argument with each piece, in order.
    let pieces: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void

    func encode(to encoder: any Encoder) throws {
        var data = Data(capacity: count)
        try pieces { data.append(contentsOf: $0) }
        var c = encoder.singleValueContainer()
        try c.encode(data)
    }
}

/// Four bytes to write at `offset` of an encoding, over the zeros of a container's length placeholder.
struct StateBinaryPatch: Equatable {
    var offset: Int
    var length: UInt32

    /// The little-endian bytes written at `offset`.
    var bytes: [UInt8] { withUnsafeBytes(of: length.littleEndian) { Array($0) } }
}

/// The buffer every container of an encoding writes into, and the containers still open. Offsets are counted from
/// the start of the encoding: when spilling, `bytes` holds only what came after the first `spilled` bytes.
final class StateBinarySink {
    var bytes: [UInt8] = []
    /// Bytes already passed to `spill` (none when encoding into memory).
    private(set) var spilled = 0
    var spillBytes = Int.max
    var spill: ((UnsafeRawBufferPointer) throws -> Void)?
    /// Lengths of containers whose placeholder was spilled before they closed.
    private(set) var patches: [StateBinaryPatch] = []
    /// Key strings in order of first use; `keyNumbers` maps them back.
    var keys: [String] = []
    private var keyNumbers: [String: Int] = [:]
    /// Offsets of the length placeholders of the open containers, outermost first.
    private var open: [Int] = []
    private var failure: EncodingError?

    /// Bytes encoded so far, spilled or not.
    var position: Int { spilled + bytes.count }

    /// Magic, the value, the key table and the table's offset.
    func encodeDocument<T: Encodable>(_ value: T) throws {
        bytes += StateBinary.magic
        try encodeValue(value, codingPath: [])
        let table = UInt64(position)
        appendVarint(UInt64(keys.count))
        for key in keys { appendString(key) }
        withUnsafeBytes(of: table.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Hands the buffered bytes to `spill`, if there is one.
    func spillBuffered() throws {
        guard let spill, !bytes.isEmpty else { return }
        try bytes.withUnsafeBytes { try spill($0) }
        spilled += bytes.count
        // One huge value (a long packed array) must not keep its capacity for the rest of the encoding.
        if bytes.capacity > 4 * spillBytes { bytes = [] } else { bytes.removeAll(keepingCapacity: true) }
    }

    /// Encodes one value; containers it opened are closed when its `encode(to:)` returns.
    func encodeValue<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws {
        if let data = value as? Data {
            bytes.append(StateBinary.Tag.bytes.rawValue)
            appendVarint(UInt64(data.count))
            if let spill, data.count >= spillBytes {  // straight out, not copied into the buffer first
                try spillBuffered()
                try data.withUnsafeBytes { try spill($0) }
                spilled += data.count
            } else {
                bytes.append(contentsOf: data)
            }
            return
        }
        if let streamed = value as? StateBinaryStreamedBytes {
            bytes.append(StateBinary.Tag.bytes.rawValue)
            appendVarint(UInt64(streamed.count))
            let end = position + streamed.count
            try streamed.pieces { piece in
                bytes.append(contentsOf: piece)
                if bytes.count >= spillBytes { try spillBuffered() }
            }
            guard position == end else {
                throw EncodingError.invalidValue(streamed.count, .init(
                    codingPath: codingPath, debugDescription: "streamed bytes: \(position - end + streamed.count) "
                        + "produced, \(streamed.count) announced"))
            }
            return
        }
        let depth = open.count
        let start = position
        try value.encode(to: StateBinaryValueEncoder(sink: self, codingPath: codingPath))
        close(above: depth)
        if position == start {  // encoded nothing at all: an empty keyed container, as JSON's `{}`
            _ = openContainer(.keyed)
            close(above: depth)
        }
        if let failure { throw failure }
        if bytes.count >= spillBytes { try spillBuffered() }
    }

    /// Opens a container; returns its index among the open ones.
    func openContainer(_ tag: StateBinary.Tag) -> Int {
        bytes.append(tag.rawValue)
        open.append(position)
        bytes += [0, 0, 0, 0]
        return open.count - 1
    }

    /// Makes container `index` the innermost open one before it writes: containers opened after it are complete.
    func activate(_ index: Int, placeholder: Int, codingPath: [any CodingKey]) {
        close(above: index + 1)
        guard index < open.count, open[index] == placeholder else {
            failure = failure ?? EncodingError.invalidValue(0, .init(
                codingPath: codingPath,
                debugDescription: "a container was written to after a later sibling: not supported by StateBinary"))
            return
        }
    }

    func close(above depth: Int) {
        while open.count > depth {
            let at = open.removeLast()
            let length = UInt32(truncatingIfNeeded: position - at - 4)
            if position - at - 4 > Int(UInt32.max) {
                failure = failure ?? EncodingError.invalidValue(0, .init(codingPath: [],
                                                                         debugDescription: "container over 4 GiB"))
            }
            guard at >= spilled else {
                patches.append(StateBinaryPatch(offset: at, length: length))
                continue
            }
            withUnsafeBytes(of: length.littleEndian) { raw in
                for i in 0..<4 { bytes[at - spilled + i] = raw[i] }
            }
        }
    }

    func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    func appendString(_ string: String) {
        var s = string
        s.withUTF8 { utf8 in
            appendVarint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    func appendKey(_ key: String) {
        if let n = keyNumbers[key] {
            appendVarint(UInt64(n))
        } else {
            keyNumbers[key] = keys.count
            appendVarint(UInt64(keys.count))
            keys.append(key)
        }
    }

    func appendNil() { bytes.append(StateBinary.Tag.null.rawValue) }
    func append(_ v: Bool) { bytes.append((v ? StateBinary.Tag.bool1 : .bool0).rawValue) }
    func append(_ v: String) {
        bytes.append(StateBinary.Tag.string.rawValue)
        appendString(v)
    }
    func append(_ v: Double) {
        bytes.append(StateBinary.Tag.double.rawValue)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    func append(_ v: Float) {
        bytes.append(StateBinary.Tag.float.rawValue)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    func append<I: FixedWidthInteger & SignedInteger>(signed v: I) {
        bytes.append(StateBinary.Tag.int.rawValue)
        let wide = Int64(v)
        appendVarint(UInt64(bitPattern: (wide << 1) ^ (wide >> 63)))
    }
    func append<I: FixedWidthInteger & UnsignedInteger>(unsigned v: I) {
        bytes.append(StateBinary.Tag.uint.rawValue)
        appendVarint(UInt64(v))
    }
}

// MARK: - Encoder

struct StateBinaryValueEncoder: Encoder {
    let sink: StateBinarySink
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let index = sink.openContainer(.keyed)
        return KeyedEncodingContainer(StateBinaryKeyedEncoder<Key>(
            sink: sink, codingPath: codingPath, index: index, placeholder: sink.position - 4))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let index = sink.openContainer(.unkeyed)
        return StateBinaryUnkeyedEncoder(sink: sink, codingPath: codingPath, index: index,
                                         placeholder: sink.position - 4)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        StateBinarySingleEncoder(sink: sink, codingPath: codingPath)
    }
}

struct StateBinaryKeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let sink: StateBinarySink
    let codingPath: [any CodingKey]
    let index: Int
    let placeholder: Int

    private func key(_ key: Key) {
        sink.activate(index, placeholder: placeholder, codingPath: codingPath)
        sink.appendKey(key.stringValue)
    }

    mutating func encodeNil(forKey k: Key) throws { key(k); sink.appendNil() }
    mutating func encode(_ v: Bool, forKey k: Key) throws { key(k); sink.append(v) }
    mutating func encode(_ v: String, forKey k: Key) throws { key(k); sink.append(v) }
    mutating func encode(_ v: Double, forKey k: Key) throws { key(k); sink.append(v) }
    mutating func encode(_ v: Float, forKey k: Key) throws { key(k); sink.append(v) }
    mutating func encode(_ v: Int, forKey k: Key) throws { key(k); sink.append(signed: v) }
    mutating func encode(_ v: Int8, forKey k: Key) throws { key(k); sink.append(signed: v) }
    mutating func encode(_ v: Int16, forKey k: Key) throws { key(k); sink.append(signed: v) }
    mutating func encode(_ v: Int32, forKey k: Key) throws { key(k); sink.append(signed: v) }
    mutating func encode(_ v: Int64, forKey k: Key) throws { key(k); sink.append(signed: v) }
    mutating func encode(_ v: UInt, forKey k: Key) throws { key(k); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt8, forKey k: Key) throws { key(k); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt16, forKey k: Key) throws { key(k); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt32, forKey k: Key) throws { key(k); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt64, forKey k: Key) throws { key(k); sink.append(unsigned: v) }
    mutating func encode<T: Encodable>(_ v: T, forKey k: Key) throws {
        key(k)
        try sink.encodeValue(v, codingPath: codingPath + [k])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey k: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        key(k)
        return StateBinaryValueEncoder(sink: sink, codingPath: codingPath + [k])
            .container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey k: Key) -> any UnkeyedEncodingContainer {
        key(k)
        return StateBinaryValueEncoder(sink: sink, codingPath: codingPath + [k]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        superEncoder(forKey: Key(stringValue: "super")!)
    }

    mutating func superEncoder(forKey k: Key) -> any Encoder {
        key(k)
        return StateBinaryValueEncoder(sink: sink, codingPath: codingPath + [k])
    }
}

struct StateBinaryUnkeyedEncoder: UnkeyedEncodingContainer {
    let sink: StateBinarySink
    let codingPath: [any CodingKey]
    let index: Int
    let placeholder: Int
    private(set) var count = 0

    init(sink: StateBinarySink, codingPath: [any CodingKey], index: Int, placeholder: Int) {
        self.sink = sink
        self.codingPath = codingPath
        self.index = index
        self.placeholder = placeholder
    }

    private mutating func next() {
        sink.activate(index, placeholder: placeholder, codingPath: codingPath)
        count += 1
    }

    mutating func encodeNil() throws { next(); sink.appendNil() }
    mutating func encode(_ v: Bool) throws { next(); sink.append(v) }
    mutating func encode(_ v: String) throws { next(); sink.append(v) }
    mutating func encode(_ v: Double) throws { next(); sink.append(v) }
    mutating func encode(_ v: Float) throws { next(); sink.append(v) }
    mutating func encode(_ v: Int) throws { next(); sink.append(signed: v) }
    mutating func encode(_ v: Int8) throws { next(); sink.append(signed: v) }
    mutating func encode(_ v: Int16) throws { next(); sink.append(signed: v) }
    mutating func encode(_ v: Int32) throws { next(); sink.append(signed: v) }
    mutating func encode(_ v: Int64) throws { next(); sink.append(signed: v) }
    mutating func encode(_ v: UInt) throws { next(); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt8) throws { next(); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt16) throws { next(); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt32) throws { next(); sink.append(unsigned: v) }
    mutating func encode(_ v: UInt64) throws { next(); sink.append(unsigned: v) }
    mutating func encode<T: Encodable>(_ v: T) throws {
        next()
        try sink.encodeValue(v, codingPath: codingPath)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey> {
        next()
        return StateBinaryValueEncoder(sink: sink, codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        next()
        return StateBinaryValueEncoder(sink: sink, codingPath: codingPath).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        next()
        return StateBinaryValueEncoder(sink: sink, codingPath: codingPath)
    }
}

struct StateBinarySingleEncoder: SingleValueEncodingContainer {
    let sink: StateBinarySink
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { sink.appendNil() }
    mutating func encode(_ v: Bool) throws { sink.append(v) }
    mutating func encode(_ v: String) throws { sink.append(v) }
    mutating func encode(_ v: Double) throws { sink.append(v) }
    mutating func encode(_ v: Float) throws { sink.append(v) }
    mutating func encode(_ v: Int) throws { sink.append(signed: v) }
    mutating func encode(_ v: Int8) throws { sink.append(signed: v) }
    mutating func encode(_ v: Int16) throws { sink.append(signed: v) }
    mutating func encode(_ v: Int32) throws { sink.append(signed: v) }
    mutating func encode(_ v: Int64) throws { sink.append(signed: v) }
    mutating func encode(_ v: UInt) throws { sink.append(unsigned: v) }
    mutating func encode(_ v: UInt8) throws { sink.append(unsigned: v) }
    mutating func encode(_ v: UInt16) throws { sink.append(unsigned: v) }
    mutating func encode(_ v: UInt32) throws { sink.append(unsigned: v) }
    mutating func encode(_ v: UInt64) throws { sink.append(unsigned: v) }
    mutating func encode<T: Encodable>(_ v: T) throws { try sink.encodeValue(v, codingPath: codingPath) }
}
