import DistillCore

// MARK: - Storage that a state snapshot does not make expensive to change
//
// At each checkpoint the loop hands a copy-on-write snapshot of the engine state to the checkpoint thread. The first
// change after it copied every collection it touched in full: with 50,000 waiting samples and 200,000 recent ids,
// that one record took 20–27 ms (`distilld bench --engine-only`, per-record times), and every record queued behind it
// waited as long. Split into shards and chunks, a change copies one shard or chunk (and the outer array of
// references); the others are copied only when they change too, spread over the records that follow.

/// A dictionary keyed by sample id, kept in shards chosen by a stable hash of the id, about 600 entries each when full.
///
/// Why 600: a Swift dictionary doubles its buckets when it passes 3/4 of them, and never shrinks. 64 shards of the
/// label join's 50,000 samples held 781 entries each on average, just over 1,024 × 3/4, so most shards had 2,048
/// buckets (at 136 B a bucket; the copies made while a checkpoint's snapshot is held cost as much again), and the
/// 200,000 recent ids, 3,125 a shard, most had 8,192. At 600 a shard, within 1,024 buckets even four standard
/// deviations over, the buckets are 58% used.
struct IDShards<Value> {
    /// Entries a shard holds when the dictionary has its expected count.
    static var entriesPerShard: Int { 600 }

    private var shards: [[String: Value]]
    /// Entries in all shards.
    private(set) var count = 0

    /// An empty dictionary, sharded for `expectedCount` entries (it holds any number). At most 65,536 shards, whatever
    /// a damaged checkpoint claims.
    init(expectedCount: Int) {
        let expected = min(max(expectedCount, 0), 1 << 40)
        let n = min(max(1, (expected + Self.entriesPerShard - 1) / Self.entriesPerShard), 1 << 16)
        shards = Array(repeating: [:], count: n)
    }

    /// The entries of `dictionary`, sharded for `expectedCount` entries.
    init(_ dictionary: [String: Value], expectedCount: Int) {
        self.init(expectedCount: expectedCount)
        for (id, value) in dictionary { self[id] = value }
    }

    /// Number of shards.
    var shardCount: Int { shards.count }

    @inline(__always)
    private func shard(_ id: String) -> Int {
        Int(truncatingIfNeeded: StableHash.id(id) % UInt64(truncatingIfNeeded: shards.count))
    }

    /// Buckets of every shard's storage (for tests: what the entries cost).
    var bucketCount: Int { shards.reduce(0) { $0 + $1.capacity * 4 / 3 } }

    subscript(id: String) -> Value? {
        get { shards[shard(id)][id] }
        set {
            if let newValue {
                updateValue(newValue, forKey: id)
            } else {
                removeValue(forKey: id)
            }
        }
    }

    /// Sets the entry for `id` and returns the value it replaced (nil when `id` is new).
    @discardableResult
    mutating func updateValue(_ value: consuming Value, forKey id: String) -> Value? {
        let old = shards[shard(id)].updateValue(value, forKey: id)
        if old == nil { count += 1 }
        return old
    }

    /// Removes and returns the entry for `id`.
    @discardableResult
    mutating func removeValue(forKey id: String) -> Value? {
        let value = shards[shard(id)].removeValue(forKey: id)
        if value != nil { count -= 1 }
        return value
    }

    /// Every id, sorted (for checkpoints, off the loop): 16 bytes an entry; the values are looked up as they are
    /// written. A sorted array of the entries themselves was 140 bytes each (7 MB for 50,000 waiting samples), held
    /// while the checkpoint wrote them.
    var sortedIDs: [String] {
        var out: [String] = []
        out.reserveCapacity(count)
        for shard in shards { out.append(contentsOf: shard.keys) }
        out.sort()
        return out
    }

    /// Every entry in one dictionary (for checkpoints, off the loop).
    var dictionary: [String: Value] {
        var out: [String: Value] = [:]
        out.reserveCapacity(count)
        for shard in shards {
            for (id, value) in shard { out[id] = value }
        }
        return out
    }
}

extension IDShards: Sendable where Value: Sendable {}

/// A set of sample ids, kept in shards chosen by a stable hash of the id (as ``IDShards``).
struct IDSet: Sendable {
    private var shards: IDShards<Void>

    /// An empty set, sharded for `expectedCount` ids.
    init(expectedCount: Int) {
        shards = IDShards(expectedCount: expectedCount)
    }

    /// The ids of `ids`, sharded for `expectedCount`.
    init<S: Sequence>(_ ids: S, expectedCount: Int) where S.Element == String {
        self.init(expectedCount: expectedCount)
        for id in ids { insert(id) }
    }

    var shardCount: Int { shards.shardCount }
    var bucketCount: Int { shards.bucketCount }

    var count: Int { shards.count }

    func contains(_ id: String) -> Bool { shards[id] != nil }

    /// True when `id` was not in the set (one lookup: replacing `()` with `()` changes nothing).
    @discardableResult
    mutating func insert(_ id: String) -> Bool {
        shards.updateValue((), forKey: id) == nil
    }

    mutating func remove(_ id: String) {
        shards.removeValue(forKey: id)
    }
}

/// An array kept in chunks of 4,096 elements: appending or changing an element after a snapshot copies one chunk, and
/// dropping a prefix drops whole chunks instead of moving every remaining element.
struct ChunkedArray<Element> {
    static var chunkSize: Int { 4096 }

    private var chunks: [[Element]] = []
    /// Index of the first element in `chunks[0]`.
    private var offset = 0
    private(set) var count = 0

    /// An empty array.
    init() {}

    /// The elements of `elements`, in order.
    init(_ elements: [Element]) {
        for e in elements { append(e) }
    }

    var isEmpty: Bool { count == 0 }

    mutating func append(_ element: Element) {
        let end = offset + count
        if end == chunks.count * Self.chunkSize {
            var chunk: [Element] = []
            chunk.reserveCapacity(Self.chunkSize)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(element)
        count += 1
    }

    subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < count, "ChunkedArray: index out of range")
            let i = offset + index
            return chunks[i / Self.chunkSize][i % Self.chunkSize]
        }
        set {
            precondition(index >= 0 && index < count, "ChunkedArray: index out of range")
            let i = offset + index
            chunks[i / Self.chunkSize][i % Self.chunkSize] = newValue
        }
    }

    /// Drops the first `n` elements.
    mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count, "ChunkedArray: cannot remove \(n) of \(count) elements")
        count -= n
        offset += n
        let whole = count == 0 ? chunks.count : offset / Self.chunkSize
        chunks.removeFirst(whole)
        offset = count == 0 ? 0 : offset - whole * Self.chunkSize
    }

}

extension ChunkedArray: RandomAccessCollection {
    var startIndex: Int { 0 }
    var endIndex: Int { count }
}

/// Encoded as an array of its elements (the same bytes as `[Element]`'s, so it decodes as one), one at a time: a
/// checkpoint does not copy 200,000 recent ids into an array first.
extension ChunkedArray: Encodable where Element: Encodable {
    func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        for e in self { try c.encode(e) }
    }
}

extension ChunkedArray: Sendable where Element: Sendable {}
