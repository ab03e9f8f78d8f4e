// MARK: - Binary layout

/// The on-disk layout of a checkpoint file, version 1. Every integer is little-endian and written byte by byte
/// (never through struct layout); strings are UTF-8.
///
/// ```
/// offset   size  field
/// 0        8     magic "DSTLCKPT" (44 53 54 4C 43 4B 50 54)
/// 8        4     u32 format version (1)
/// 12       8     u64 payload length P
/// 20       P     payload
/// 20+P     4     u32 CRC-32C (Castagnoli) of bytes [0, 20+P): header and payload
/// ```
/// The file is exactly `24 + P` bytes; anything shorter is `truncated`, anything longer `trailingBytes`.
/// The version is checked before the length so a file of another format reports `unsupportedVersion`.
///
/// Payload:
/// ```
/// u64 sequence
/// i64 createdAtMilliseconds
/// str configRevision                      str = u32 byte count + UTF-8 bytes
/// str writerVersion
/// u32 offset count N, then N × { str topic, i32 partition, i64 nextOffset }   sorted by (topic, partition)
/// u32 section count M, then M × { str name, u64 byte count B, B bytes }      in the checkpoint's order
/// ```
public enum StateCheckpointFormat {
    /// The 8 bytes every checkpoint starts with.
    public static let magic: [UInt8] = Array("DSTLCKPT".utf8)
    /// The version this build writes.
    public static let currentVersion: UInt32 = 1
    /// The versions this build reads.
    public static let supportedVersions: ClosedRange<UInt32> = 1...1
    /// Magic + version + payload length.
    public static let headerSize = 20
    /// The CRC-32C trailer.
    public static let trailerSize = 4

    /// Validates the first `min(fileSize, headerSize)` bytes of a file and returns the payload length.
    static func parseHeader(_ header: UnsafeRawBufferPointer, fileSize: UInt64, path: String) throws -> UInt64 {
        let minimum = UInt64(headerSize + trailerSize)
        let magicCount = min(header.count, magic.count)
        guard header.prefix(magicCount).elementsEqual(magic.prefix(magicCount)) else {
            throw StateError.badMagic(path)
        }
        guard header.count >= magic.count + 4 else {
            throw StateError.truncated(path, expected: minimum, actual: fileSize)
        }
        let version = header.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
        guard supportedVersions.contains(version) else {
            throw StateError.unsupportedVersion(path, found: version)
        }
        guard header.count >= headerSize else {
            throw StateError.truncated(path, expected: minimum, actual: fileSize)
        }
        let payloadLength = header.loadUnaligned(fromByteOffset: 12, as: UInt64.self).littleEndian
        let (expected, overflow) = payloadLength.addingReportingOverflow(minimum)
        if overflow || fileSize < expected {
            throw StateError.truncated(path, expected: overflow ? .max : expected, actual: fileSize)
        }
        if fileSize > expected {
            throw StateError.trailingBytes(path, count: fileSize - expected)
        }
        return payloadLength
    }
}

// MARK: - Encoding

/// Where encoded bytes go: an array in memory, or a buffered file descriptor that checksums as it writes.
protocol StateByteSink {
    mutating func append(_ bytes: UnsafeRawBufferPointer) throws
    /// Writes `bytes` over bytes already appended, starting `offset` bytes from the first one.
    mutating func overwrite(at offset: Int, with bytes: [UInt8]) throws
}

extension StateByteSink {
    mutating func append<T: FixedWidthInteger>(littleEndian value: T) throws {
        var le = value.littleEndian
        try withUnsafeBytes(of: &le) { try append($0) }
    }

    mutating func append(string: String) throws {
        var copy = string
        try copy.withUTF8 { utf8 in
            try append(littleEndian: UInt32(utf8.count))
            try append(UnsafeRawBufferPointer(utf8))
        }
    }

    mutating func append(bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try append($0) }
    }
}

/// Appends to an in-memory array.
struct StateArraySink: StateByteSink {
    var bytes: [UInt8] = []

    mutating func append(_ buffer: UnsafeRawBufferPointer) throws {
        bytes.append(contentsOf: buffer)
    }

    mutating func overwrite(at offset: Int, with patch: [UInt8]) throws {
        bytes.replaceSubrange(offset..<offset + patch.count, with: patch)
    }
}

// MARK: - StateStreamedSection

/// A section encoded (in the `StateBinary` form) while the checkpoint is written, never held whole as bytes: the
/// engine state is tens of MB, and holding its encoding raised the daemon's peak memory by as much at every
/// checkpoint. Written after the checkpoint's byte sections; read back as an ordinary section.
public struct StateStreamedSection: Sendable {
    /// A unique, non-empty name, as a ``StateSection``'s.
    public var name: String
    let encode: @Sendable (_ spill: (UnsafeRawBufferPointer) throws -> Void) throws
        -> (count: Int, patches: [StateBinaryPatch])

    /// A section holding `value`'s `StateBinary` encoding (`StateBinaryEncoder().encode(value)`).
    public init<T: Encodable & Sendable>(name: String, value: T) {
        self.name = name
        self.encode = { spill in try StateBinaryEncoder().encode(value, spill: spill) }
    }
}

extension StateCheckpoint {
    /// The longest string field the encoder accepts, in UTF-8 bytes.
    static let maximumStringBytes = 64 * 1024

    /// Checks what the decoder would reject, so a bad checkpoint fails at write time, not at restore.
    func validateForEncoding(path: String, streaming streamed: [StateStreamedSection] = []) throws {
        func invalid(_ reason: String) -> StateError {
            StateError(
                kind: .invalidCheckpoint(reason: reason), path: path,
                reason: "cannot write checkpoint: \(reason)",
                hint: "This is a bug in the component that built the checkpoint; the previous checkpoint is intact.")
        }
        var names = Set<String>()
        let sectionNames = sections.map(\.name) + streamed.map(\.name)
        for name in sectionNames {
            guard !name.isEmpty else { throw invalid("a section has an empty name") }
            guard names.insert(name).inserted else {
                throw invalid("section name \"\(name)\" appears twice")
            }
        }
        let strings = [configRevision, writerVersion] + sectionNames + offsets.keys.map(\.topic)
        if let long = strings.first(where: { $0.utf8.count > Self.maximumStringBytes }) {
            throw invalid("a string field is longer than \(Self.maximumStringBytes) bytes: \(long.prefix(40))...")
        }
        if let negative = offsets.first(where: { $0.value < 0 }) {
            throw invalid("offset \(negative.value) for \(negative.key) is negative")
        }
    }

    /// The payload's size in bytes, computed without encoding it.
    var encodedPayloadLength: UInt64 {
        var length: UInt64 = 8 + 8 + 4 + 4 + 4 + 4
        length += UInt64(configRevision.utf8.count + writerVersion.utf8.count)
        for key in offsets.keys { length += 4 + UInt64(key.topic.utf8.count) + 4 + 8 }
        for section in sections { length += 4 + UInt64(section.name.utf8.count) + 8 + UInt64(section.bytes.count) }
        return length
    }

    /// Writes header, payload and checksum to `sink`, then `streamed` after the byte sections.
    ///
    /// A streamed section's length, and so the payload's, is known only once it is encoded: their fields are
    /// written as zeros, overwritten at the end, and the checksum corrected for them (`overwriteZeros`), so the
    /// file is the one its encoded bytes as a ``StateSection`` would give.
    func encode(into sink: inout some StateByteSink, streaming streamed: [StateStreamedSection] = []) throws {
        var checked = StateChecksummingSink(inner: sink, crc: StateCRC32C())
        var patches: [(offset: Int, bytes: [UInt8])] = []
        try checked.append(bytes: StateCheckpointFormat.magic)
        try checked.append(littleEndian: StateCheckpointFormat.currentVersion)
        try checked.append(littleEndian: streamed.isEmpty ? encodedPayloadLength : 0)
        try checked.append(littleEndian: sequence)
        try checked.append(littleEndian: createdAtMilliseconds)
        try checked.append(string: configRevision)
        try checked.append(string: writerVersion)
        try checked.append(littleEndian: UInt32(offsets.count))
        for (key, offset) in offsets.sorted(by: { $0.key < $1.key }) {
            try checked.append(string: key.topic)
            try checked.append(littleEndian: key.partition)
            try checked.append(littleEndian: offset)
        }
        try checked.append(littleEndian: UInt32(sections.count + streamed.count))
        for section in sections {
            try checked.append(string: section.name)
            try checked.append(littleEndian: UInt64(section.bytes.count))
            try checked.append(bytes: section.bytes)
        }
        for section in streamed {
            try checked.append(string: section.name)
            let lengthAt = checked.count
            try checked.append(littleEndian: UInt64(0))
            let start = checked.count
            let (count, inner) = try section.encode { try checked.append($0) }
            precondition(checked.count == start + count, "a streamed section wrote other than it counted")
            patches.append((lengthAt, le(UInt64(count))))
            patches += inner.map { (start + $0.offset, $0.bytes) }
        }
        if !streamed.isEmpty {
            patches.append((12, le(UInt64(checked.count - StateCheckpointFormat.headerSize))))
        }
        for patch in patches {
            checked.crc.overwriteZeros(with: patch.bytes, bytesAfter: checked.count - patch.offset - patch.bytes.count)
        }
        let crc = checked.crc
        sink = checked.inner
        try sink.append(littleEndian: crc.value)
        for patch in patches { try sink.overwrite(at: patch.offset, with: patch.bytes) }
    }

    /// The complete file image; handy for tests and small checkpoints. `StateStore` streams instead.
    public func encoded(streaming streamed: [StateStreamedSection] = []) throws -> [UInt8] {
        try validateForEncoding(path: "<memory>", streaming: streamed)
        var sink = StateArraySink()
        sink.bytes.reserveCapacity(Int(encodedPayloadLength) + StateCheckpointFormat.headerSize + 4)
        try encode(into: &sink, streaming: streamed)
        return sink.bytes
    }
}

/// Passes bytes through to `inner`, checksumming and counting them on the way.
private struct StateChecksummingSink<Inner: StateByteSink>: StateByteSink {
    var inner: Inner
    var crc: StateCRC32C
    var count = 0

    mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        crc.update(bytes)
        count += bytes.count
        try inner.append(bytes)
    }

    mutating func overwrite(at offset: Int, with bytes: [UInt8]) throws {
        preconditionFailure("the checksum is corrected by overwriteZeros, then the inner sink is patched")
    }
}

/// `value`'s little-endian bytes.
private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

// MARK: - Decoding

extension StateCheckpoint {
    /// Decodes a complete file image, checking magic, version, length and checksum; `path` names it in errors.
    public static func decode(_ file: [UInt8], path: String = "<memory>") throws -> StateCheckpoint {
        try file.withUnsafeBytes { raw in
            let headerCount = min(raw.count, StateCheckpointFormat.headerSize)
            let header = UnsafeRawBufferPointer(rebasing: raw[0..<headerCount])
            let payloadLength = try StateCheckpointFormat.parseHeader(
                header, fileSize: UInt64(raw.count), path: path)
            let end = StateCheckpointFormat.headerSize + Int(payloadLength)
            var crc = StateCRC32C()
            crc.update(UnsafeRawBufferPointer(rebasing: raw[0..<end]))
            let stored = raw.loadUnaligned(fromByteOffset: end, as: UInt32.self).littleEndian
            guard stored == crc.value else {
                throw StateError.checksumMismatch(path, stored: stored, computed: crc.value)
            }
            return try decodePayload(
                UnsafeRawBufferPointer(rebasing: raw[StateCheckpointFormat.headerSize..<end]), path: path)
        }
    }

    /// Decodes a payload whose checksum has already been verified.
    static func decodePayload(_ payload: UnsafeRawBufferPointer, path: String) throws -> StateCheckpoint {
        var reader = StatePayloadReader(bytes: payload, path: path)
        reader.part = "<metadata>"
        let sequence = try reader.read(UInt64.self)
        let createdAt = try reader.read(Int64.self)
        let configRevision = try reader.readString()
        let writerVersion = try reader.readString()

        reader.part = "<offsets>"
        let offsetCount = try reader.read(UInt32.self)
        var offsets: [StateTopicPartition: Int64] = [:]
        for _ in 0..<offsetCount {
            let topic = try reader.readString()
            let partition = try reader.read(Int32.self)
            let offset = try reader.read(Int64.self)
            let key = StateTopicPartition(topic: topic, partition: partition)
            guard offset >= 0, offsets.updateValue(offset, forKey: key) == nil else {
                throw reader.malformed("offset for \(key) is negative or repeated")
            }
        }

        reader.part = "<sections>"
        let sectionCount = try reader.read(UInt32.self)
        var sections: [StateSection] = []
        var names = Set<String>()
        for _ in 0..<sectionCount {
            reader.part = "<sections>"
            let name = try reader.readString()
            reader.part = name
            guard !name.isEmpty, names.insert(name).inserted else { throw reader.malformed("empty or repeated name") }
            let length = try reader.read(UInt64.self)
            sections.append(StateSection(name: name, bytes: try reader.readBytes(length)))
        }
        reader.part = "<sections>"
        guard reader.remaining == 0 else { throw reader.malformed("\(reader.remaining) bytes after the last section") }
        return StateCheckpoint(
            sequence: sequence, createdAtMilliseconds: createdAt, configRevision: configRevision,
            writerVersion: writerVersion, offsets: offsets, sections: sections)
    }
}

/// A bounds-checked little-endian cursor; every failure names the part being read.
private struct StatePayloadReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var position = 0
    var part = ""

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - position }

    func malformed(_ detail: String) -> StateError {
        StateError.malformed(path, section: part, detail)
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else {
            throw malformed("needs \(size) more bytes at payload offset \(position), \(remaining) left")
        }
        defer { position += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    mutating func readBytes(_ count: UInt64) throws -> [UInt8] {
        guard count <= UInt64(remaining) else {
            throw malformed("declares \(count) bytes at payload offset \(position), \(remaining) left")
        }
        defer { position += Int(count) }
        return Array(UnsafeRawBufferPointer(rebasing: bytes[position..<(position + Int(count))]))
    }

    mutating func readString() throws -> String {
        let count = try read(UInt32.self)
        let raw = try readBytes(UInt64(count))
        guard let string = String(validating: raw, as: UTF8.self) else { throw malformed("invalid UTF-8 text") }
        return string
    }
}
