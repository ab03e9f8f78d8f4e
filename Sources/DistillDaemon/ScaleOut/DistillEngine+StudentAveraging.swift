import DistillCore
import Foundation

// MARK: - Model averaging across instances

/// A worker's online student, shared with the merger: its weights and how many samples trained them since it last
/// adopted an average.
struct StudentShare: Codable, Sendable {
    var writer: UInt64
    /// Increases with each share of one writer: an average names the shares it took.
    var sequence: UInt64
    /// The average round the weights started from.
    var basedOn: UInt64
    var samples: Int
    var trained: [Float]
    var ema: [Float]
    /// The worker's prequential agreement of the EMA student with the teacher, over `evidenceSamples` samples.
    var agreement: Double
    var evidenceSamples: Int
    var ece: Double?
    /// The teacher versions the worker distilled from, for the checkpoint's metadata.
    var teachers: [String]
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
    /// Worker: the last share sent and not yet taken into an adopted average (one at a time), and the samples learned
    /// when it was taken.
    var shared: StudentShare?
    var samplesAtShare = 0
    var shareSequence: UInt64 = 0
    /// Merger: the latest share per worker process, not averaged yet.
    var shares: [UInt64: StudentShare] = [:]
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
        let evidence = distiller.emaPrequential.gateEvidence()
        studentBook.shareSequence += 1
        let share = StudentShare(
            writer: writer, sequence: studentBook.shareSequence, basedOn: studentBook.round,
            samples: studentBook.samplesSinceAdoption, trained: distiller.model.parameterArray,
            ema: distiller.emaParameterArray, agreement: evidence.agreement, evidenceSamples: evidence.sampleCount,
            ece: evidence.ece, teachers: distiller.teacherVersionsUsed)
        studentBook.shared = share
        studentBook.samplesAtShare = studentBook.samplesSinceAdoption
        return share
    }

    /// A worker adopts a newer average (local SGD). What it learned after its share is kept: it adopts the average
    /// plus its own progress since the share, so no sample's update is lost. An average without this worker's share
    /// is adopted only when the worker has nothing shared (its share goes into the next round).
    func adoptAverage(_ average: StudentAverage, writer: UInt64) {
        guard role == .worker, let distiller, average.round > studentBook.round,
              average.trained.count == distiller.model.parameterCount else { return }
        if let shared = studentBook.shared {
            guard average.contributors[writer] == shared.sequence else { return }
            var trained = distiller.model.parameterArray, ema = distiller.emaParameterArray
            for i in trained.indices {
                trained[i] = average.trained[i] + (trained[i] - shared.trained[i])
                ema[i] = average.ema[i] + (ema[i] - shared.ema[i])
            }
            distiller.adopt(trained: trained, ema: ema)
            studentBook.samplesSinceAdoption -= studentBook.samplesAtShare
        } else {
            guard studentBook.samplesSinceAdoption == 0 else { return }
            distiller.adopt(trained: average.trained, ema: average.ema)
        }
        studentBook.round = average.round
        studentBook.shared = nil
    }

    /// The merger keeps the latest share per worker.
    func handleShare(_ share: StudentShare) {
        guard role == .merger, let distiller, share.trained.count == distiller.model.parameterCount,
              share.ema.count == distiller.model.parameterCount else { return }
        studentBook.shares[share.writer] = share
    }

    /// The merger averages the shares waiting, weighted by the samples behind each, and returns the average for the
    /// workers and, when one is due and the gate passes, a student checkpoint (the only ones published in scale-out).
    func averageStudents(at eventTime: Int64) -> (StudentAverage, [EngineOutput])? {
        guard role == .merger, let distiller else { return nil }
        let shares = studentBook.shares.values.filter { $0.samples > 0 }.sorted { $0.writer < $1.writer }
        let total = shares.reduce(0) { $0 + $1.samples }
        guard total > 0 else { return nil }
        studentBook.shares.removeAll()
        let n = distiller.model.parameterCount
        var trained = [Float](repeating: 0, count: n), ema = [Float](repeating: 0, count: n)
        for share in shares {
            let w = Float(Double(share.samples) / Double(total))
            for i in 0..<n {
                trained[i] += w * share.trained[i]
                ema[i] += w * share.ema[i]
            }
        }
        studentBook.round += 1
        studentBook.samplesTotal += total
        studentBook.samplesSinceCheckpoint += total
        let average = StudentAverage(
            round: studentBook.round, trained: trained, ema: ema, samples: total,
            contributors: Dictionary(uniqueKeysWithValues: shares.map { ($0.writer, $0.sequence) }),
            samplesTotal: studentBook.samplesTotal)
        distiller.adopt(trained: trained, ema: ema)
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
