import DistillCore
import Foundation

// MARK: - LabelJoinBuffer

/// Joins late labels to samples by id within an event-time window, in bounded memory.
///
/// An unlabeled sample waits here (features dropped: the windows need only the logits) until its label arrives or
/// it falls out of the join window. A label that arrives first waits for its sample the same way. When either side
/// is full, the oldest entry is dropped and counted: memory never grows with traffic.
struct LabelJoinBuffer: Codable, Sendable {
    let windowMillis: Int64
    let capacity: Int
    /// Waiting samples by id, with the input partition each was read from. Sharded and chunked so that the first
    /// change after a checkpoint's snapshot does not copy the whole buffer (`SnapshotFriendlyStorage`).
    private var samples: IDShards<WaitingSample>
    private var sampleOrder = ChunkedArray<JoinEntry>()
    private var sampleHead = 0
    private var labels: IDShards<LabelRecord>
    private var labelOrder = ChunkedArray<JoinEntry>()
    private var labelHead = 0
    /// Labels whose sample had already left the buffer (or never came within the window).
    private(set) var tooLate = 0
    /// Samples that left the buffer without a label.
    private(set) var unlabeledExpired = 0

    init(windowMillis: Int64, capacity: Int) {
        self.windowMillis = windowMillis
        self.capacity = capacity
        samples = IDShards(expectedCount: capacity)
        labels = IDShards(expectedCount: capacity)
    }

    var waitingLabels: Int { labels.count }
    var waitingSamples: Int { samples.count }
    var counts: LabelJoinCounts { LabelJoinCounts(waitingLabels: waitingLabels, tooLate: tooLate) }

    /// Takes the sample (consuming it): copied in and out again, its arrays and strings were retained and released
    /// once more per waiting sample, a few percent of the engine's time.
    mutating func waitForLabel(_ sample: consuming DistillSample, partition: Int32) {
        if samples.count >= capacity { evictOldestSample() }
        let id = sample.id, ts = sample.timestamp
        sample.features = []
        samples.updateValue(WaitingSample(sample: sample, partition: partition), forKey: id)
        sampleOrder.append(JoinEntry(id: id, ts: ts))
    }

    /// Returns the counts after the label is added.
    @discardableResult
    mutating func waitForSample(_ label: LabelRecord) -> LabelJoinCounts {
        if labels.count >= capacity { evictOldestLabel() }
        labels.updateValue(label, forKey: label.id)
        labelOrder.append(JoinEntry(id: label.id, ts: label.timestamp))
        return counts
    }

    mutating func takeLabel(for id: String) -> Int? {
        labels.removeValue(forKey: id)?.label
    }

    mutating func takeSample(for id: String) -> WaitingSample? {
        samples.removeValue(forKey: id)
    }

    /// Drops entries older than `eventTime − window`; returns the counts left.
    @discardableResult
    mutating func expire(before eventTime: Int64) -> LabelJoinCounts {
        let cutoff = eventTime - windowMillis
        while sampleHead < sampleOrder.count, sampleOrder[sampleHead].ts < cutoff { evictOldestSample() }
        while labelHead < labelOrder.count, labelOrder[labelHead].ts < cutoff { evictOldestLabel() }
        compact()
        return counts
    }

    private mutating func evictOldestSample() {
        guard sampleHead < sampleOrder.count else { return }
        if samples.removeValue(forKey: sampleOrder[sampleHead].id) != nil { unlabeledExpired += 1 }
        sampleHead += 1
    }

    private mutating func evictOldestLabel() {
        guard labelHead < labelOrder.count else { return }
        if labels.removeValue(forKey: labelOrder[labelHead].id) != nil { tooLate += 1 }
        labelHead += 1
    }

    /// Keeps the order queues from growing with taken (already joined) entries.
    private mutating func compact() {
        if sampleHead > 4096 && sampleHead * 2 > sampleOrder.count {
            sampleOrder.removeFirst(sampleHead)
            sampleHead = 0
        }
        if labelHead > 4096 && labelHead * 2 > labelOrder.count {
            labelOrder.removeFirst(labelHead)
            labelHead = 0
        }
    }
}

/// What the engine's counters report of a buffer: labels waiting for their sample, and labels that waited too long.
struct LabelJoinCounts: Equatable, Sendable {
    var waitingLabels = 0
    var tooLate = 0
}

/// An unlabeled sample waiting for its label, and the partition whose panes its labeled half belongs to.
struct WaitingSample: Codable, Sendable {
    var sample: DistillSample
    var partition: Int32
}

/// One waiting id and its event time, in arrival order.
struct JoinEntry: Codable, Sendable {
    var id: String
    var ts: Int64
}

// MARK: - Checkpoint form

/// The buffer's checkpoint form. The waiting samples and the arrival order are written as columns (raw number arrays,
/// one byte run of ids, a table of the version and slice strings): field by field, 50,000 waiting samples were 80% of
/// a checkpoint's encoding time. Buffers written field by field (`samples`, `sampleOrder`) are still read.
extension LabelJoinBuffer {
    enum CodingKeys: String, CodingKey {
        case windowMillis, capacity, samples, sampleOrder, sampleHead, labels, labelOrder, labelHead, tooLate
        case unlabeledExpired, waiting, arrivals
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        windowMillis = try c.decode(Int64.self, forKey: .windowMillis)
        capacity = try c.decode(Int.self, forKey: .capacity)
        if c.contains(.waiting) {
            let columns = try c.decode(WaitingColumns.self, forKey: .waiting)
            samples = IDShards(try columns.samples(codingPath: c.codingPath), expectedCount: capacity)
            sampleOrder = ChunkedArray(
                try c.decode(JoinEntryColumns.self, forKey: .arrivals).entries(codingPath: c.codingPath))
        } else {
            samples = IDShards(try c.decode([String: WaitingSample].self, forKey: .samples), expectedCount: capacity)
            sampleOrder = ChunkedArray(try c.decode([JoinEntry].self, forKey: .sampleOrder))
        }
        sampleHead = try c.decode(Int.self, forKey: .sampleHead)
        labels = IDShards(try c.decode([String: LabelRecord].self, forKey: .labels), expectedCount: capacity)
        labelOrder = ChunkedArray(try c.decode([JoinEntry].self, forKey: .labelOrder))
        labelHead = try c.decode(Int.self, forKey: .labelHead)
        tooLate = try c.decode(Int.self, forKey: .tooLate)
        unlabeledExpired = try c.decode(Int.self, forKey: .unlabeledExpired)
        guard sampleHead >= 0, sampleHead <= sampleOrder.count, labelHead >= 0, labelHead <= labelOrder.count else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath,
                                                    debugDescription: "label join: queue heads out of range"))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(windowMillis, forKey: .windowMillis)
        try c.encode(capacity, forKey: .capacity)
        try c.encode(WaitingColumnsWriter(samples), forKey: .waiting)
        try c.encode(JoinEntryColumnsWriter(entries: sampleOrder), forKey: .arrivals)
        try c.encode(sampleHead, forKey: .sampleHead)
        try c.encode(labels.dictionary, forKey: .labels)
        try c.encode(labelOrder, forKey: .labelOrder)
        try c.encode(labelHead, forKey: .labelHead)
        try c.encode(tooLate, forKey: .tooLate)
        try c.encode(unlabeledExpired, forKey: .unlabeledExpired)
    }
}

/// Raw little-endian bytes of a number array, and back (checked: a whole number of elements).
private enum RawColumn {
    static func data<T: BitwiseCopyable>(_ values: [T]) -> Data { values.withUnsafeBytes { Data($0) } }

    static func values<T: BitwiseCopyable>(_ data: Data, _ type: T.Type, count: Int? = nil,
                                           codingPath: [any CodingKey]) throws -> [T] {
        let stride = MemoryLayout<T>.stride
        guard data.count % stride == 0, count.map({ $0 * stride == data.count }) ?? true else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath,
                                                    debugDescription: "label join: a column has the wrong length"))
        }
        return [T](unsafeUninitializedCapacity: data.count / stride) { buffer, initialized in
            data.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
            initialized = data.count / stride
        }
    }

    /// Strings as one UTF-8 byte run, produced as it is written, and their lengths.
    static func strings<C: Collection & Sendable>(_ values: C) -> (bytes: StateBinaryStreamedBytes, lengths: Data)
    where C.Element == String {
        var lengths: [UInt32] = []
        lengths.reserveCapacity(values.count)
        var total = 0
        for v in values {
            lengths.append(UInt32(v.utf8.count))
            total += v.utf8.count
        }
        let bytes = StateBinaryStreamedBytes(count: total) { piece in
            for v in values {
                var v = v
                try v.withUTF8 { try piece(UnsafeRawBufferPointer($0)) }
            }
        }
        return (bytes, data(lengths))
    }

    static func strings(_ bytes: Data, _ lengths: Data, codingPath: [any CodingKey]) throws -> [String] {
        let counts = try values(lengths, UInt32.self, codingPath: codingPath)
        guard counts.reduce(0, { $0 + Int($1) }) == bytes.count else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath,
                                                    debugDescription: "label join: id bytes do not match their lengths"))
        }
        var out: [String] = []
        out.reserveCapacity(counts.count)
        bytes.withUnsafeBytes { raw in
            var at = 0
            for n in counts {
                out.append(String(decoding: UnsafeRawBufferPointer(rebasing: raw[at ..< at + Int(n)]), as: UTF8.self))
                at += Int(n)
            }
        }
        return out
    }
}

/// Waiting samples as columns, in id order (so a checkpoint does not depend on the dictionary's hash order). Read
/// back through this type; written by `WaitingColumnsWriter`.
private struct WaitingColumns: Decodable {
    var idBytes: Data, idLengths: Data
    var timestamps: Data, partitions: Data, classes: Data, labels: Data
    /// Version and slice strings; the index columns refer to them, -1 for none.
    var strings: [String]
    var teacherCounts: Data, teacherVersions: Data, studentVersions: Data, slices: Data
    var featureCounts: Data, features: Data, teacherLogits: Data, studentLogits: Data

    enum CodingKeys: String, CodingKey {
        case idBytes, idLengths, timestamps, partitions, classes, labels, strings, teacherCounts, teacherVersions,
             studentVersions, slices, featureCounts, features, teacherLogits, studentLogits
    }

    /// The samples back, every shape checked before a `DistillSample` is built (its initializer traps on a bad one).
    func samples(codingPath: [any CodingKey]) throws -> [String: WaitingSample] {
        func fail(_ why: String) -> DecodingError {
            .dataCorrupted(.init(codingPath: codingPath, debugDescription: "label join: \(why)"))
        }
        let ids = try RawColumn.strings(idBytes, idLengths, codingPath: codingPath)
        let n = ids.count
        let ts = try RawColumn.values(timestamps, Int64.self, count: n, codingPath: codingPath)
        let parts = try RawColumn.values(partitions, Int32.self, count: n, codingPath: codingPath)
        let cs = try RawColumn.values(classes, Int32.self, count: n, codingPath: codingPath)
        let ys = try RawColumn.values(labels, Int32.self, count: n, codingPath: codingPath)
        let tcs = try RawColumn.values(teacherCounts, Int32.self, count: n, codingPath: codingPath)
        let tvs = try RawColumn.values(teacherVersions, Int32.self, codingPath: codingPath)
        let svs = try RawColumn.values(studentVersions, Int32.self, count: n, codingPath: codingPath)
        let sls = try RawColumn.values(slices, Int32.self, count: n, codingPath: codingPath)
        let fcs = try RawColumn.values(featureCounts, Int32.self, count: n, codingPath: codingPath)
        let fs = try RawColumn.values(features, Float.self, codingPath: codingPath)
        let tls = try RawColumn.values(teacherLogits, Float.self, codingPath: codingPath)
        let sts = try RawColumn.values(studentLogits, Float.self, codingPath: codingPath)
        func string(_ i: Int32) throws -> String? {
            if i == -1 { return nil }
            guard i >= 0, Int(i) < strings.count else { throw fail("a string index is out of range") }
            return strings[Int(i)]
        }
        var out: [String: WaitingSample] = [:]
        out.reserveCapacity(n)
        var tv = 0, f = 0, tl = 0, sl = 0
        for k in 0..<n {
            let c = Int(cs[k]), teachers = Int(tcs[k]), featureCount = Int(fcs[k])
            let student = try string(svs[k])
            let studentCount = student == nil ? 0 : c
            guard c >= 1, teachers >= 0, featureCount >= 0, tv + teachers <= tvs.count, f + featureCount <= fs.count,
                  tl + teachers * c <= tls.count, sl + studentCount <= sts.count, ys[k] >= -1, ys[k] < c
            else { throw fail("sample \(ids[k]) does not match its shape") }
            let versions = try tvs[tv ..< tv + teachers].map { v -> String in
                guard let s = try string(v) else { throw fail("a teacher version is missing") }
                return s
            }
            let sample = DistillSample(
                id: ids[k], timestamp: ts[k], classes: c, features: Array(fs[f ..< f + featureCount]),
                teacherVersions: versions, teacherLogits: Array(tls[tl ..< tl + teachers * c]),
                studentVersion: student, studentLogits: Array(sts[sl ..< sl + studentCount]),
                label: ys[k] < 0 ? nil : Int(ys[k]), slice: try string(sls[k]))
            out[ids[k]] = WaitingSample(sample: sample, partition: parts[k])
            tv += teachers
            f += featureCount
            tl += teachers * c
            sl += studentCount
        }
        guard tv == tvs.count, f == fs.count, tl == tls.count, sl == sts.count, out.count == n else {
            throw fail("columns hold more than their samples")
        }
        return out
    }
}

/// Writes `WaitingColumns`' fields in their order, the large number columns as they are encoded: built whole
/// through growing arrays they took about twice their 22 MB while a checkpoint was written. The samples are looked
/// up once, in id order, keeping only references to their arrays (24 bytes a sample): a sorted array of the samples
/// themselves was 7 MB more.
private struct WaitingColumnsWriter: Encodable {
    let samples: IDShards<WaitingSample>
    let ids: [String]

    init(_ samples: IDShards<WaitingSample>) {
        self.samples = samples
        ids = samples.sortedIDs
    }

    func encode(to encoder: any Encoder) throws {
        typealias Key = WaitingColumns.CodingKeys
        var table: [String: Int32] = [:]
        var strings: [String] = []
        func index(_ s: String?) -> Int32 {
            guard let s else { return -1 }
            if let i = table[s] { return i }
            let i = Int32(strings.count)
            strings.append(s)
            table[s] = i
            return i
        }
        let n = ids.count
        var timestamps: [Int64] = [], partitions: [Int32] = [], classes: [Int32] = [], labels: [Int32] = []
        var teacherCounts: [Int32] = [], teacherVersions: [Int32] = [], studentVersions: [Int32] = []
        var slices: [Int32] = [], featureCounts: [Int32] = []
        timestamps.reserveCapacity(n)
        partitions.reserveCapacity(n)
        classes.reserveCapacity(n)
        labels.reserveCapacity(n)
        teacherCounts.reserveCapacity(n)
        studentVersions.reserveCapacity(n)
        slices.reserveCapacity(n)
        featureCounts.reserveCapacity(n)
        var featureTotal = 0, teacherTotal = 0, studentTotal = 0
        var features: [[Float]] = [], teacherLogits: [[Float]] = [], studentLogits: [[Float]] = []
        features.reserveCapacity(n)
        teacherLogits.reserveCapacity(n)
        studentLogits.reserveCapacity(n)
        for id in ids {
            guard let w = samples[id] else { preconditionFailure("label join: a sorted id has no sample") }
            let s = w.sample
            timestamps.append(s.timestamp)
            partitions.append(w.partition)
            classes.append(Int32(s.classes))
            labels.append(s.label.map(Int32.init) ?? -1)
            teacherCounts.append(Int32(s.teacherVersions.count))
            for v in s.teacherVersions { teacherVersions.append(index(v)) }
            studentVersions.append(index(s.studentVersion))
            slices.append(index(s.slice))
            featureCounts.append(Int32(s.features.count))
            featureTotal += s.features.count
            teacherTotal += s.teacherLogits.count
            studentTotal += s.studentLogits.count
            features.append(s.features)
            teacherLogits.append(s.teacherLogits)
            studentLogits.append(s.studentLogits)
        }
        var c = encoder.container(keyedBy: Key.self)
        let (idBytes, idLengths) = RawColumn.strings(ids)
        try c.encode(idBytes, forKey: .idBytes)
        try c.encode(idLengths, forKey: .idLengths)
        try c.encode(RawColumn.data(timestamps), forKey: .timestamps)
        try c.encode(RawColumn.data(partitions), forKey: .partitions)
        try c.encode(RawColumn.data(classes), forKey: .classes)
        try c.encode(RawColumn.data(labels), forKey: .labels)
        try c.encode(strings, forKey: .strings)
        try c.encode(RawColumn.data(teacherCounts), forKey: .teacherCounts)
        try c.encode(RawColumn.data(teacherVersions), forKey: .teacherVersions)
        try c.encode(RawColumn.data(studentVersions), forKey: .studentVersions)
        try c.encode(RawColumn.data(slices), forKey: .slices)
        try c.encode(RawColumn.data(featureCounts), forKey: .featureCounts)
        try c.encode(Self.floats(count: featureTotal, features), forKey: .features)
        try c.encode(Self.floats(count: teacherTotal, teacherLogits), forKey: .teacherLogits)
        try c.encode(Self.floats(count: studentTotal, studentLogits), forKey: .studentLogits)
    }

    /// One number column: the arrays' values, in order, as raw bytes, written array by array.
    private static func floats(count: Int, _ arrays: [[Float]]) -> StateBinaryStreamedBytes {
        StateBinaryStreamedBytes(count: count * MemoryLayout<Float>.stride) { piece in
            for a in arrays where !a.isEmpty { try a.withUnsafeBytes { try piece($0) } }
        }
    }
}

/// The arrival order as columns (read back through this type; written by `JoinEntryColumnsWriter`).
private struct JoinEntryColumns: Decodable {
    var idBytes: Data, idLengths: Data, timestamps: Data

    enum CodingKeys: String, CodingKey { case idBytes, idLengths, timestamps }

    func entries(codingPath: [any CodingKey]) throws -> [JoinEntry] {
        let ids = try RawColumn.strings(idBytes, idLengths, codingPath: codingPath)
        let ts = try RawColumn.values(timestamps, Int64.self, count: ids.count, codingPath: codingPath)
        return zip(ids, ts).map { JoinEntry(id: $0, ts: $1) }
    }
}

/// Writes `JoinEntryColumns` straight from the queue, without an array of its entries first.
private struct JoinEntryColumnsWriter: Encodable {
    let entries: ChunkedArray<JoinEntry>

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JoinEntryColumns.CodingKeys.self)
        let (idBytes, idLengths) = RawColumn.strings(entries.lazy.map(\.id))
        try c.encode(idBytes, forKey: .idBytes)
        try c.encode(idLengths, forKey: .idLengths)
        let entries = self.entries
        try c.encode(StateBinaryStreamedBytes(count: entries.count * MemoryLayout<Int64>.stride) { piece in
            for e in entries { try withUnsafeBytes(of: e.ts) { try piece($0) } }
        }, forKey: .timestamps)
    }
}
