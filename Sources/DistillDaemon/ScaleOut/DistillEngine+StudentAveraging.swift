import DistillCore
import Foundation

// MARK: - Model averaging across instances

/// A worker's online student, shared with the merger: what it learned since the weights it last adopted (its base),
/// and from how many samples.
///
/// Shares carry progress, not weights: the merger adds it to its newest average, so a share based on an older round
/// than the merger's keeps every later round's progress instead of replacing it (rounds often hold one worker's share
/// only, and a worker waits for the round holding its share before it adopts another).
struct StudentShare: Codable, Sendable {
    var writer: UInt64
    /// Increases with each share of one writer: an average names the shares it took.
    var sequence: UInt64
    /// The average round the base is (0: the configured initial weights, the same in every instance).
    var basedOn: UInt64
    var samples: Int
    /// The worker's weights minus its base's, for the trained student and for the EMA.
    var trainedProgress: [Float]
    var emaProgress: [Float]
    /// The worker's prequential agreement of the EMA student with the teacher, over `evidenceSamples` samples.
    var agreement: Double
    var evidenceSamples: Int
    var ece: Double?
    /// The teacher versions the worker distilled from, for the checkpoint's metadata.
    var teachers: [String]
}

/// A student's two weight vectors: the trained one and its EMA.
struct StudentWeights: Codable, Sendable, Equatable {
    var trained: [Float]
    var ema: [Float]
}

/// Weights averaged by the merger, which every worker adopts.
struct StudentAverage: Codable, Sendable {
    var round: UInt64
    var trained: [Float]
    var ema: [Float]
    /// Samples behind this round (the sum of the shares' samples).
    var samples: Int
    /// The share each writer contributed, by sequence.
    var contributors: [UInt64: UInt64]
    /// Samples behind every round so far.
    var samplesTotal: Int
}

/// The averaging bookkeeping: a worker's side and the merger's.
struct StudentBook: Codable, Sendable {
    /// Worker: the round adopted last, and samples learned since.
    var round: UInt64 = 0
    var samplesSinceAdoption = 0
    /// Worker: the weights adopted last (nil: the initial weights), which a share's progress is measured from.
    var base: StudentWeights?
    /// Worker: the last share sent and not yet taken into an adopted average (one at a time), the weights it was taken
    /// from, and the samples learned then.
    var shared: StudentShare?
    var sharedWeights: StudentWeights?
    var samplesAtShare = 0
    var shareSequence: UInt64 = 0
    /// Merger: the latest share per worker process, not averaged yet.
    var shares: [UInt64: StudentShare] = [:]
    /// Merger: the newest average's weights, which the next round adds to (kept in the merge state for a takeover).
    var global: StudentWeights?
    /// Merger: samples averaged since the last published checkpoint, and in all.
    var samplesSinceCheckpoint = 0
    var samplesTotal = 0
}

extension DistillEngine {
    /// A worker's share for the merger, when its student learned since it last adopted an average.
    func studentShare(writer: UInt64) -> StudentShare? {
        guard role == .worker, let distiller, studentBook.shared == nil, studentBook.samplesSinceAdoption > 0 else {
            return nil
        }
        let now = StudentWeights(trained: distiller.model.parameterArray, ema: distiller.emaParameterArray)
        if studentBook.base == nil { studentBook.base = try? Self.initialStudentWeights(config) }
        let base = studentBook.base ?? now
        let evidence = distiller.emaPrequential.gateEvidence()
        studentBook.shareSequence += 1
        let share = StudentShare(
            writer: writer, sequence: studentBook.shareSequence, basedOn: studentBook.round,
            samples: studentBook.samplesSinceAdoption, trainedProgress: zip(now.trained, base.trained).map { $0 - $1 },
            emaProgress: zip(now.ema, base.ema).map { $0 - $1 }, agreement: evidence.agreement,
            evidenceSamples: evidence.sampleCount, ece: evidence.ece, teachers: distiller.teacherVersionsUsed)
        studentBook.shared = share
        studentBook.sharedWeights = now
        studentBook.samplesAtShare = studentBook.samplesSinceAdoption
        return share
    }

    /// The student's weights before any training: the configured seed makes them the same in every instance, so they
    /// are the base of round 0 for workers and merger alike.
    static func initialStudentWeights(_ config: DistillConfig) throws -> StudentWeights {
        let fresh = try OnlineDistiller(config.student.distiller)
        return StudentWeights(trained: fresh.model.parameterArray, ema: fresh.emaParameterArray)
    }

    /// A worker adopts a newer average (local SGD). What it learned after its share is kept: it adopts the average
    /// plus its own progress since the share, so no sample's update is lost. An average without this worker's share
    /// is adopted only when the worker has nothing shared (its share goes into the next round).
    func adoptAverage(_ average: StudentAverage, writer: UInt64) {
        guard role == .worker, let distiller, average.round > studentBook.round,
              average.trained.count == distiller.model.parameterCount,
              average.ema.count == distiller.model.parameterCount else { return }
        if let shared = studentBook.shared, let at = studentBook.sharedWeights {
            guard average.contributors[writer] == shared.sequence else { return }
            var trained = distiller.model.parameterArray, ema = distiller.emaParameterArray
            for i in trained.indices {
                trained[i] = average.trained[i] + (trained[i] - at.trained[i])
                ema[i] = average.ema[i] + (ema[i] - at.ema[i])
            }
            distiller.adopt(trained: trained, ema: ema)
            studentBook.samplesSinceAdoption -= studentBook.samplesAtShare
        } else {
            guard studentBook.samplesSinceAdoption == 0 else { return }
            distiller.adopt(trained: average.trained, ema: average.ema)
        }
        // Progress since the share, kept above, is not in the average: the next share measures from the average.
        studentBook.base = StudentWeights(trained: average.trained, ema: average.ema)
        studentBook.round = average.round
        studentBook.shared = nil
        studentBook.sharedWeights = nil
    }

    /// A merger taking over continues from the newest average: the restored merge state's, or a newer one published
    /// after that state (`newest`, read back from the merge topic). The next round is numbered after both.
    func resumeAveraging(after newest: StudentAverage?) {
        guard role == .merger, let distiller else { return }
        let n = distiller.model.parameterCount
        if let newest, newest.round >= studentBook.round, newest.trained.count == n, newest.ema.count == n {
            studentBook.global = StudentWeights(trained: newest.trained, ema: newest.ema)
        }
        studentBook.round = max(studentBook.round, newest?.round ?? 0)
        if let global = studentBook.global, global.trained.count == n, global.ema.count == n {
            distiller.adopt(trained: global.trained, ema: global.ema)
        }
    }

    /// The weights a share stands for in a round. Progress over an average is added to the newest average, so a share
    /// based on an older round keeps the later rounds' progress. A share based on round 0 once rounds exist trained
    /// from the initial weights on its own (its instance could not read an average at start): it is an independent
    /// model, not progress over the newest average (added to it, it would count again what that average had learned).
    /// It is mixed with the newest average by the samples behind each.
    private func modelOfShare(_ share: StudentShare, newest: StudentWeights) -> StudentWeights {
        guard share.basedOn == 0, studentBook.round > 0 else {
            return StudentWeights(trained: zip(newest.trained, share.trainedProgress).map { $0 + $1 },
                                  ema: zip(newest.ema, share.emaProgress).map { $0 + $1 })
        }
        let initial = (try? Self.initialStudentWeights(config)) ?? newest
        let keep = Float(Double(studentBook.samplesTotal) / Double(studentBook.samplesTotal + share.samples))
        func mix(_ a: [Float], _ base: [Float], _ progress: [Float]) -> [Float] {
            a.indices.map { keep * a[$0] + (1 - keep) * (base[$0] + progress[$0]) }
        }
        return StudentWeights(trained: mix(newest.trained, initial.trained, share.trainedProgress),
                              ema: mix(newest.ema, initial.ema, share.emaProgress))
    }

    /// Merger: the shares a round would average (those with samples behind them), by writer.
    private var waitingShares: [StudentShare] {
        studentBook.shares.values.filter { $0.samples > 0 }.sorted { $0.writer < $1.writer }
    }

    /// Merger: the workers with a share not averaged yet.
    var waitingShareWriters: Set<UInt64> { Set(waitingShares.map(\.writer)) }

    /// The merger keeps the latest share per worker.
    func handleShare(_ share: StudentShare) {
        guard role == .merger, let distiller, share.trainedProgress.count == distiller.model.parameterCount,
              share.emaProgress.count == distiller.model.parameterCount else { return }
        studentBook.shares[share.writer] = share
    }

    /// The merger averages the shares waiting (`modelOfShare`), weighted by the samples behind each (FedAvg: when every
    /// share is based on the newest average, this is the weighted mean of the workers' weights), and returns the new
    /// average for the workers and, when one is due and the gate passes, a student checkpoint (the only ones published
    /// in scale-out).
    func averageStudents(at eventTime: Int64) -> (StudentAverage, [EngineOutput])? {
        guard role == .merger, let distiller else { return nil }
        let shares = waitingShares
        let total = shares.reduce(0) { $0 + $1.samples }
        guard total > 0 else { return nil }
        studentBook.shares.removeAll()
        let newest = StudentWeights(trained: distiller.model.parameterArray, ema: distiller.emaParameterArray)
        var trained = [Float](repeating: 0, count: newest.trained.count), ema = trained
        for share in shares {
            let model = modelOfShare(share, newest: newest)
            let w = Float(Double(share.samples) / Double(total))
            for i in trained.indices {
                trained[i] += w * model.trained[i]
                ema[i] += w * model.ema[i]
            }
        }
        studentBook.round += 1
        studentBook.samplesTotal += total
        studentBook.samplesSinceCheckpoint += total
        let average = StudentAverage(
            round: studentBook.round, trained: trained, ema: ema, samples: total,
            contributors: Dictionary(uniqueKeysWithValues: shares.map { ($0.writer, $0.sequence) }),
            samplesTotal: studentBook.samplesTotal)
        // The merger's student is the newest average: the next round adds to it.
        distiller.adopt(trained: trained, ema: ema)
        studentBook.global = StudentWeights(trained: trained, ema: ema)
        // The gate's evidence pools the workers' prequential agreement (Wilson interval on the pooled counts).
        let trials = shares.reduce(0) { $0 + $1.evidenceSamples }
        let hits = shares.reduce(0.0) { $0 + $1.agreement * Double($1.evidenceSamples) }
        let interval = PrequentialCounters.wilson(successes: Int(hits.rounded()), trials: trials, z: 1.96)
        let withECE = shares.filter { $0.ece != nil && $0.evidenceSamples > 0 }
        let eceTrials = withECE.reduce(0) { $0 + $1.evidenceSamples }
        let evidence = GateEvidence(
            agreement: trials > 0 ? hits / Double(trials) : 0, agreementLower: interval.lower,
            agreementUpper: interval.upper,
            ece: eceTrials > 0 ? withECE.reduce(0.0) { $0 + $1.ece! * Double($1.evidenceSamples) } / Double(eceTrials)
                : nil,
            sampleCount: trials)
        var outputs: [EngineOutput] = []
        switch config.student.checkpoints.decide(samplesSinceLastCheckpoint: studentBook.samplesSinceCheckpoint,
                                                 evidence: evidence) {
        case .notDue:
            break
        case .blocked:
            counters.studentCheckpointsBlocked += 1
            studentBook.samplesSinceCheckpoint = 0
        case .write:
            studentBook.samplesSinceCheckpoint = 0
            counters.studentCheckpoints += 1
            var checkpoint = distiller.makeCheckpoint(
                evidence: evidence, teacherStrategy: config.teacher.strategy.description,
                decision: "average of \(shares.count) instance(s), round \(studentBook.round); interval of "
                    + "\(config.student.checkpoints.intervalSamples) samples; gate passed",
                createdAtMilliseconds: eventTime)
            checkpoint.metadata.samplesSeen = studentBook.samplesTotal
            var teachers: [String] = []
            for v in shares.flatMap(\.teachers) where !teachers.contains(v) { teachers.append(v) }
            checkpoint.metadata.teacherVersions = teachers
            outputs.append(.studentCheckpoint(checkpoint))
        }
        return (average, outputs)
    }
}
