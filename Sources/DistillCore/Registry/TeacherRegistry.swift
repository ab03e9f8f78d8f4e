// MARK: - Registry events

/// What changed in the registry; the daemon turns these into triggers and alerts.
public enum TeacherRegistryEvent: Sendable, Equatable {
    /// The newest active teacher changed (`previous` is nil for the first).
    case newActive(version: String, previous: String?)
    /// The new active teacher has a higher `major` than the previous one: `teacher_major_version`.
    case majorVersionChanged(old: String, new: String, oldMajor: Int, newMajor: Int)
    /// A teacher failed its health check: `teacher_regressed` (alert its owners; it is not distilled from).
    case regressed(version: String, reason: String)
    /// The teacher that `latest` distils from changed (nil when none is healthy).
    case distillationTeacherChanged(from: String?, to: String?)
}

// MARK: - Registry

/// The known teacher versions (from the `teachers` topic), their health, and which teacher is old, new, and
/// distilled from.
///
/// - "new" teacher: the active record with the latest `created_at` (ties: greater version string).
/// - "old" teacher: the latest-created *other* version that has ever been active (it may since be retired), for
///   drift statistics between old and new.
/// - distillation teacher (`latest` strategy): the newest active teacher that is not regressed (and, with
///   ``TeacherHealthPolicy/requireObservation``, has passed an observation).
///
/// Recorded figures are checked when a record arrives, against the previous healthy new teacher; observed
/// figures when the caller reports them with ``observe(version:metrics:)``. A value type: the daemon keeps it in
/// its state machine.
public struct TeacherRegistry: Sendable, Equatable {
    /// Health tolerances.
    public var policy: TeacherHealthPolicy
    /// Records by version.
    public private(set) var records: [String: TeacherRecord] = [:]
    /// Health by version.
    public private(set) var health: [String: TeacherHealth] = [:]
    /// Versions that have been active at some point.
    public private(set) var everActive: Set<String> = []

    /// Creates an empty registry.
    public init(policy: TeacherHealthPolicy = .init()) {
        self.policy = policy
    }

    // MARK: Queries

    /// The newest active teacher.
    public var newTeacher: TeacherRecord? {
        Self.newest(records.values.filter { $0.status == .active })
    }

    /// The previous active teacher (latest-created other version that was ever active).
    public var oldTeacher: TeacherRecord? {
        let newVersion = newTeacher?.version
        return Self.newest(everActive.compactMap { records[$0] }.filter { $0.version != newVersion })
    }

    /// The teacher the `latest` strategy distils from: the newest active, non-regressed teacher.
    public var distillationTeacher: TeacherRecord? {
        Self.newest(records.values.filter { $0.status == .active && isHealthyForDistillation($0.version) })
    }

    /// Whether `version` may be distilled from: known, not regressed and (if required) observed healthy.
    public func isHealthyForDistillation(_ version: String) -> Bool {
        switch health[version] {
        case .healthy: true
        case .recordedOK: !policy.requireObservation
        case .regressed, nil: false
        }
    }

    static func newest<S: Sequence>(_ s: S) -> TeacherRecord? where S.Element == TeacherRecord {
        s.max { ($0.createdAtMilliseconds, $0.version) < ($1.createdAtMilliseconds, $1.version) }
    }

    // MARK: Updates

    /// Applies a record (insert or update of its version) and returns the resulting events.
    public mutating func apply(_ record: TeacherRecord) -> [TeacherRegistryEvent] {
        let before = snapshot()
        let previous = records[record.version]
        records[record.version] = record
        if record.status == .active { everActive.insert(record.version) }
        var events: [TeacherRegistryEvent] = []
        let figuresChanged = previous == nil || previous!.accuracy != record.accuracy || previous!.ece != record.ece
        if figuresChanged || health[record.version] == nil {
            let baseline = Self.newest(
                records.values.filter {
                    $0.version != record.version && everActive.contains($0.version)
                        && $0.createdAtMilliseconds <= record.createdAtMilliseconds
                        && !(health[$0.version]?.isRegressed ?? false)
                })
            if let reason = policy.recordedRegression(record, baseline: baseline) {
                if health[record.version] != .regressed(reason: reason) {
                    health[record.version] = .regressed(reason: reason)
                    events.append(.regressed(version: record.version, reason: reason))
                }
            } else if health[record.version] == nil || health[record.version]!.isRegressed {
                health[record.version] = .recordedOK
            }
        }
        events += transitions(from: before)
        return events
    }

    /// Removes a version (a tombstone on the compacted topic) and returns the resulting events.
    public mutating func remove(version: String) -> [TeacherRegistryEvent] {
        let before = snapshot()
        records[version] = nil
        health[version] = nil
        everActive.remove(version)
        return transitions(from: before)
    }

    /// Reports the teacher's observed accuracy/ECE on the stream; may mark it regressed (or healthy).
    /// Unknown versions are ignored.
    public mutating func observe(version: String, metrics: ObservedTeacherMetrics) -> [TeacherRegistryEvent] {
        guard let record = records[version] else { return [] }
        if case .regressed = health[version] { return [] }  // regressions are sticky until figures change
        let before = snapshot()
        var events: [TeacherRegistryEvent] = []
        if let reason = policy.observedRegression(record, observed: metrics) {
            health[version] = .regressed(reason: reason)
            events.append(.regressed(version: version, reason: reason))
        } else {
            health[version] = .healthy
        }
        return events + transitions(from: before)
    }

    struct Snapshot {
        var new: TeacherRecord?
        var distill: String?
    }

    func snapshot() -> Snapshot { Snapshot(new: newTeacher, distill: distillationTeacher?.version) }

    func transitions(from before: Snapshot) -> [TeacherRegistryEvent] {
        var events: [TeacherRegistryEvent] = []
        let now = newTeacher
        if now?.version != before.new?.version, let now {
            events.append(.newActive(version: now.version, previous: before.new?.version))
            if let old = before.new, now.major > old.major {
                events.append(
                    .majorVersionChanged(old: old.version, new: now.version, oldMajor: old.major, newMajor: now.major))
            }
        }
        let distill = distillationTeacher?.version
        if distill != before.distill { events.append(.distillationTeacherChanged(from: before.distill, to: distill)) }
        return events
    }
}
