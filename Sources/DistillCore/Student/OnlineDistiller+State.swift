import Foundation

// MARK: - Full trainer state (for the daemon's state checkpoint)

extension OnlineDistiller {
    /// Format tag of ``trainerState()``.
    public static let trainerStateFormat = "distilld.trainer.v1"

    /// The full trainer state as safetensors, so a restarted daemon resumes learning where it stopped:
    /// tensors `student.*` and `ema.*` (same names as a checkpoint under those prefixes), `optimizer.first` and
    /// `optimizer.second` (momentum / Adam moments, flat), plus counters and teacher bookkeeping in `__metadata__`.
    ///
    /// A partially filled batch is not included: call ``flush()`` first to keep it. The prequential counters
    /// are running statistics and are not saved (the daemon's windows are the record).
    public func trainerState() -> [UInt8] {
        var tensors: [SafeTensor] = []
        for t in model.tensors() {
            tensors.append(SafeTensor(name: "student." + t.name, shape: t.shape, values: t.values))
        }
        for t in model.tensors(of: UnsafeBufferPointer(meanTeacher.parameters)) {
            tensors.append(SafeTensor(name: "ema." + t.name, shape: t.shape, values: t.values))
        }
        tensors.append(
            SafeTensor(name: "optimizer.first", shape: [optimizer.first.count], values: Array(optimizer.first)))
        tensors.append(
            SafeTensor(name: "optimizer.second", shape: [optimizer.second.count], values: Array(optimizer.second)))
        func json(_ a: [String]) -> String { "[" + a.map(SafeTensors.jsonString).joined(separator: ",") + "]" }
        var meta: [String: String] = [
            "format": Self.trainerStateFormat,
            "loss": configuration.loss.name,
            "optimizer": configuration.optimizer.kind.rawValue,
            "parameter_count": "\(model.parameterCount)",
            "samples_seen": "\(samplesSeen)",
            "samples_rejected": "\(samplesRejected)",
            "steps_applied": "\(stepsApplied)",
            "batches_skipped": "\(batchesSkipped)",
            "batches_clipped": "\(batchesClipped)",
            "teacher_changes": "\(teacherChanges)",
            "optimizer_step_count": "\(optimizer.stepCount)",
            "ema_ramp_start": "\(meanTeacher.rampStart)",
            "teacher_versions_used": json(teacherVersionsUsed),
            "last_versions": json(lastVersions),
            "seen_versions": json(seenVersions.sorted()),
            "has_distilled": hasDistilled ? "true" : "false",
        ]
        if let runningLoss { meta["running_loss"] = "\(runningLoss)" }
        return SafeTensors.encode(tensors, metadata: meta)
    }

    /// Restores a state written by ``trainerState()`` into this trainer (same model shape, loss and optimizer
    /// kind). Throws ``StudentError`` naming the part that does not fit; on error nothing is changed.
    public func restoreTrainerState(_ bytes: [UInt8]) throws {
        let (tensors, meta) = try SafeTensors.decode(bytes)
        func req(_ k: String) throws -> String {
            guard let v = meta[k] else { throw StudentError.checkpoint("__metadata__.\(k)", "missing") }
            return v
        }
        func int(_ k: String) throws -> Int {
            guard let v = Int(try req(k)), v >= 0 else {
                throw StudentError.checkpoint("__metadata__.\(k)", "not a non-negative integer")
            }
            return v
        }
        func strings(_ k: String) throws -> [String] {
            guard let data = try req(k).data(using: .utf8),
                let a = (try? JSONSerialization.jsonObject(with: data)) as? [String]
            else { throw StudentError.checkpoint("__metadata__.\(k)", "not a JSON array of strings") }
            return a
        }
        guard try req("format") == Self.trainerStateFormat else {
            throw StudentError.checkpoint("__metadata__.format", "not a \(Self.trainerStateFormat) state")
        }
        guard try req("loss") == configuration.loss.name, try req("optimizer") == configuration.optimizer.kind.rawValue
        else {
            throw StudentError.checkpoint(
                "__metadata__.loss", "state was written for another loss or optimizer; start fresh or change config")
        }
        func prefixed(_ p: String) -> [SafeTensor] {
            tensors.filter { $0.name.hasPrefix(p) }.map {
                SafeTensor(name: String($0.name.dropFirst(p.count)), shape: $0.shape, values: $0.values)
            }
        }
        let student = try model.flatParameters(from: prefixed("student."))
        let ema = try model.flatParameters(from: prefixed("ema."))
        guard let first = tensors.first(where: { $0.name == "optimizer.first" }),
            first.values.count == optimizer.first.count,
            let second = tensors.first(where: { $0.name == "optimizer.second" }),
            second.values.count == optimizer.second.count
        else { throw StudentError.checkpoint("optimizer", "optimizer state missing or of the wrong size") }
        let counters = (
            try int("samples_seen"), try int("samples_rejected"), try int("steps_applied"), try int("batches_skipped"),
            try int("batches_clipped"), try int("teacher_changes"), try int("optimizer_step_count"),
            try int("ema_ramp_start")
        )
        let used = try strings("teacher_versions_used")
        let last = try strings("last_versions")
        let seen = try strings("seen_versions")
        let runningLoss = meta["running_loss"].flatMap(Double.init)

        // Everything parsed: apply.
        model.parameterArray = student
        ema.withUnsafeBufferPointer { meanTeacher.reset(to: $0) }
        _ = optimizer.first.update(fromContentsOf: first.values)
        _ = optimizer.second.update(fromContentsOf: second.values)
        model.zeroGradients()
        batchCount = 0
        batchLoss = 0
        (samplesSeen, samplesRejected, stepsApplied, batchesSkipped, batchesClipped, teacherChanges) = (
            counters.0, counters.1, counters.2, counters.3, counters.4, counters.5
        )
        optimizer.stepCount = counters.6
        meanTeacher.rampStart = counters.7
        teacherVersionsUsed = used
        lastVersions = last
        seenVersions = Set(seen)
        hasDistilled = meta["has_distilled"] == "true"
        self.runningLoss = runningLoss
    }
}
