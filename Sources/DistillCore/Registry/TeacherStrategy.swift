// MARK: - Teacher strategy

/// Which teacher(s) the online student distils from.
///
/// - ``latest``: the registry's newest healthy active teacher (``TeacherRegistry/distillationTeacher``).
/// - ``lts(version:)``: a pinned long-term-stable version (used unless the registry knows it as regressed).
/// - ``ensemble(count:)``: the average soft labels of the last K teacher versions present on the sample
///   (You et al. 2017, "Learning from Multiple Teacher Networks"), ordered by the registry's `created_at`;
///   unknown, regressed and `candidate` versions are left out.
public enum TeacherStrategy: Sendable, Equatable, CustomStringConvertible {
    /// Newest healthy teacher.
    case latest
    /// Pinned version.
    case lts(version: String)
    /// Mean soft labels of the newest K versions on the sample.
    case ensemble(count: Int)

    /// `latest`, `lts:<version>` or `ensemble:<K>` (recorded in every student checkpoint).
    public var description: String {
        switch self {
        case .latest: "latest"
        case .lts(let v): "lts:\(v)"
        case .ensemble(let k): "ensemble:\(k)"
        }
    }

    /// Checks that the pinned version is non-empty and K ≥ 1.
    public func validate() throws {
        switch self {
        case .latest: return
        case .lts(let v):
            guard !v.isEmpty else {
                throw TeacherRegistryError(
                    .invalidConfiguration, field: "teacher.lts_version", reason: "must be set for lts")
            }
        case .ensemble(let k):
            guard k >= 1 else {
                throw TeacherRegistryError(.invalidConfiguration, field: "teacher.ensemble_size", reason: "must be ≥ 1")
            }
        }
    }
}

/// The teachers chosen for one sample: positions in the sample's teacher list and their versions (newest first
/// for the ensemble). Empty with a `skipReason` when no teacher qualifies (the sample is then used for labels
/// only, or just scored).
public struct TeacherSelection: Sendable, Equatable {
    /// Indices into the sample's teacher entries.
    public var indices: [Int]
    /// The selected versions, parallel to `indices`.
    public var versions: [String]
    /// Why nothing was selected, when `indices` is empty.
    public var skipReason: String?

    /// Whether any teacher was selected.
    public var isEmpty: Bool { indices.isEmpty }
}

extension TeacherRegistry {
    /// Selects the teachers to distil from among the versions present on a sample (`available`, in the sample's
    /// order).
    public func select(_ strategy: TeacherStrategy, available: [String]) -> TeacherSelection {
        switch strategy {
        case .latest:
            guard let v = distillationTeacher?.version else {
                return TeacherSelection(indices: [], versions: [], skipReason: "no healthy active teacher")
            }
            guard let i = available.firstIndex(of: v) else {
                return TeacherSelection(indices: [], versions: [], skipReason: "teacher \(v) not on the sample")
            }
            return TeacherSelection(indices: [i], versions: [v], skipReason: nil)
        case .lts(let v):
            if health[v]?.isRegressed == true {
                return TeacherSelection(indices: [], versions: [], skipReason: "pinned teacher \(v) is regressed")
            }
            guard let i = available.firstIndex(of: v) else {
                return TeacherSelection(indices: [], versions: [], skipReason: "pinned teacher \(v) not on the sample")
            }
            return TeacherSelection(indices: [i], versions: [v], skipReason: nil)
        case .ensemble(let k):
            var candidates: [(record: TeacherRecord, index: Int)] = []
            for (i, v) in available.enumerated() {
                guard let r = records[v], r.status != .candidate, !(health[v]?.isRegressed ?? true) else { continue }
                if candidates.contains(where: { $0.record.version == v }) { continue }
                candidates.append((r, i))
            }
            candidates.sort {
                ($0.record.createdAtMilliseconds, $0.record.version) > (
                    $1.record.createdAtMilliseconds, $1.record.version
                )
            }
            let chosen = candidates.prefix(k)
            guard !chosen.isEmpty else {
                return TeacherSelection(indices: [], versions: [], skipReason: "no known healthy teacher on the sample")
            }
            return TeacherSelection(
                indices: chosen.map(\.index), versions: chosen.map(\.record.version), skipReason: nil)
        }
    }
}
