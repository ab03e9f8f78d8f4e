import Foundation
import KafkaClient

// MARK: - Records on the scale-out topics

/// One record of the scale-out topics: a chunk of a StateBinary-encoded value, in a small binary envelope.
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `DSO1` |
/// | 1 | kind (`ScaleOutRecord.Kind`) |
/// | 4 | source partition (big-endian Int32; −1 for the merger's state) |
/// | 8 + 8 | token: writer id and sequence (one token per encoded value) |
/// | 4 + 4 | chunk index and chunk count |
/// | rest | the chunk |
///
/// Values larger than `chunkBytes` are split: a record stays well under librdkafka's default `message.max.bytes`
/// (1,000,000), and a reader reassembles a value once every chunk of its token has arrived. The chunks of one value go
/// to one partition in order, so a writer that dies mid-value leaves an incomplete token that readers ignore.
struct ScaleOutRecord: Sendable, Equatable {
    enum Kind: UInt8, Sendable {
        /// A sealed `WindowSetPartial` (partials topic).
        case sealed = 1
        /// A partition's `PartitionProgress` (partials topic).
        case progress = 2
        /// A partition's `PartitionState` with the offsets it covers (changelog topic).
        case state = 3
        /// The merger's `MergeState` (merge topic).
        case merge = 4
        /// A worker's `StudentShare` (partials topic).
        case student = 5
        /// The merger's `StudentAverage`, which every worker adopts (merge topic).
        case average = 6
    }

    static let magic: [UInt8] = Array("DSO1".utf8)
    static let headerBytes = 4 + 1 + 4 + 16 + 8
    static let chunkBytes = 512 * 1024

    var kind: Kind
    var partition: Int32
    var token: ScaleOutToken
    var index: UInt32
    var count: UInt32
    var chunk: [UInt8]

    /// Splits an encoded value into records.
    static func chunks(of value: [UInt8], kind: Kind, partition: Int32, token: ScaleOutToken) -> [ScaleOutRecord] {
        let count = max(1, (value.count + chunkBytes - 1) / chunkBytes)
        return (0..<count).map { i in
            let range = (i * chunkBytes)..<min(value.count, (i + 1) * chunkBytes)
            return ScaleOutRecord(kind: kind, partition: partition, token: token, index: UInt32(i),
                                  count: UInt32(count), chunk: Array(value[range]))
        }
    }

    var bytes: [UInt8] {
        var out = Self.magic
        out.reserveCapacity(Self.headerBytes + chunk.count)
        out.append(kind.rawValue)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) } }
        put(partition)
        put(token.writer)
        put(token.sequence)
        put(index)
        put(count)
        out += chunk
        return out
    }

    /// Decodes a record's envelope; nil when it is not one.
    init?(bytes: [UInt8]) {
        guard bytes.count >= Self.headerBytes, Array(bytes[0..<4]) == Self.magic,
              let kind = Kind(rawValue: bytes[4]) else { return nil }
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for i in 0..<MemoryLayout<T>.size { v = (v << 8) | T(truncatingIfNeeded: bytes[at + i]) }
            return v
        }
        self.kind = kind
        partition = get(5, Int32.self)
        token = ScaleOutToken(writer: get(9, UInt64.self), sequence: get(17, UInt64.self))
        index = get(25, UInt32.self)
        count = get(29, UInt32.self)
        guard count > 0, index < count else { return nil }
        chunk = Array(bytes[Self.headerBytes...])
    }

    init(kind: Kind, partition: Int32, token: ScaleOutToken, index: UInt32, count: UInt32, chunk: [UInt8]) {
        self.kind = kind
        self.partition = partition
        self.token = token
        self.index = index
        self.count = count
        self.chunk = chunk
    }
}

/// Identifies one encoded value: the writing process (random at start) and a sequence number within it.
struct ScaleOutToken: Hashable, Sendable, Codable, CustomStringConvertible {
    var writer: UInt64
    var sequence: UInt64
    var description: String { String(writer, radix: 16) + "-" + String(sequence) }
}

/// Reassembles chunked values, in bounded memory: at most `limit` incomplete tokens are kept, the oldest dropped.
struct ChunkAssembler {
    private var parts: [ScaleOutToken: (count: UInt32, chunks: [UInt32: [UInt8]])] = [:]
    private var order: [ScaleOutToken] = []
    let limit: Int

    init(limit: Int = 256) { self.limit = limit }

    /// Adds a record; returns the whole value when this was its last missing chunk.
    mutating func add(_ record: ScaleOutRecord) -> [UInt8]? {
        if record.count == 1 { return record.chunk }
        if parts[record.token] == nil {
            if order.count >= limit { parts[order.removeFirst()] = nil }
            order.append(record.token)
            parts[record.token] = (record.count, [:])
        }
        parts[record.token]!.chunks[record.index] = record.chunk
        guard let entry = parts[record.token], entry.chunks.count == Int(entry.count) else { return nil }
        parts[record.token] = nil
        order.removeAll { $0 == record.token }
        return (0..<entry.count).flatMap { entry.chunks[$0]! }
    }
}

/// A partition's state as published to the changelog, with the next input offsets it covers.
struct PublishedPartitionState: Codable, Sendable {
    var state: PartitionState
    var samplesNext: Int64?
    var labelsNext: Int64?
}

/// The merger's state as published to the merge topic, with the next partials offset per partition it covers.
struct PublishedMergeState: Codable, Sendable {
    var state: MergeState
    var partialsNext: [Int32: Int64]
}
