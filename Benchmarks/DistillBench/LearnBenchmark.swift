import DistillCore
import Foundation

// MARK: - 2. Online distillation updates

/// `OnlineDistiller.learn(features:teachers:label:)` (test-then-train: EMA scoring, student forward, loss,
/// backward, an Adam step every `batchSize` samples) for softmax regression and a 64-64-16 MLP under each
/// loss, against the prequential scoring alone (`scoreEMA`) on the same inputs.
///
/// The teacher is the newest version on each record (the `latest` strategy); every record is labeled.
struct LearnBenchmark {
    /// Samples per optimizer step.
    static let batchSize = 32
    /// The student shapes measured: name and hidden layers.
    static let models: [(name: String, hidden: [Int])] = [("softmax 64→16", []), ("MLP 64-64-16", [64])]
    /// The losses measured.
    static let losses: [KDLoss] = [.hinton(), .dkd(), .auxiliary()]
    /// Issue 6 targets for `full` end to end (samples/s): softmax regression, MLP.
    static let fullTargets = (softmax: 150_000.0, mlp: 50_000.0)

    /// One record's inputs, prepared outside the timed loop.
    struct Input {
        var features: [Float]
        var teachers: [TeacherLogits]
        var label: Int?
    }

    /// The decoded samples.
    let samples: [DistillSample]

    /// The distiller configuration for one model and loss.
    static func configuration(hidden: [Int], loss: KDLoss) -> OnlineDistillerConfiguration {
        OnlineDistillerConfiguration(
            model: StudentModelConfiguration(
                inputDimension: SampleCorpus.features, classCount: SampleCorpus.classes, hiddenLayers: hidden),
            loss: loss, optimizer: StudentOptimizerConfiguration(kind: .adam), batchSize: batchSize)
    }

    /// Measures every model: the `scoreEMA` baseline, then each loss. Returns the baseline of each model first.
    func run(_ runner: BenchRunner, sink: inout UInt64) throws -> [Measurement] {
        let inputs = samples.map { s in
            Input(features: s.features,
                  teachers: [TeacherLogits(version: s.teacherVersions[0], logits: s.teacherLogits(at: 0))],
                  label: s.label)
        }
        var out: [Measurement] = []
        var localSink = sink
        for (modelName, hidden) in Self.models {
            let scorer = try OnlineDistiller(Self.configuration(hidden: hidden, loss: .hinton()))
            var logits = [Float](repeating: 0, count: SampleCorpus.classes)
            let baseline = runner.measure("learn", "\(modelName): scoreEMA only") {
                logits.withUnsafeMutableBufferPointer { out in
                    for input in inputs {
                        input.features.withUnsafeBufferPointer { scorer.scoreEMA(features: $0, into: out) }
                        BlackHole.consume(out[0], into: &localSink)
                    }
                }
                return inputs.count
            }
            out.append(baseline)
            for loss in Self.losses {
                let distiller = try OnlineDistiller(Self.configuration(hidden: hidden, loss: loss))
                var m = runner.measure("learn", "\(modelName): learn, \(loss.name)") {
                    for input in inputs {
                        let o = distiller.learn(features: input.features, teachers: input.teachers, label: input.label)
                        BlackHole.consume(o.emaPrediction &+ 31 &* o.studentPrediction, into: &localSink)
                    }
                    return inputs.count
                }
                m.compare(with: baseline)
                let target = hidden.isEmpty ? Self.fullTargets.softmax : Self.fullTargets.mlp
                m.notes.append("batch \(Self.batchSize), Adam, T = 2, teacher = latest, all labeled")
                m.notes.append(String(format: "steps %d, skipped %d, running loss %.3f", distiller.stepsApplied,
                                      distiller.batchesSkipped, distiller.runningLoss ?? .nan))
                m.notes.append(verdict("component alone vs `full` end-to-end", m.median, target, cpu: m.cpuMedian))
                guard distiller.batchesSkipped == 0, distiller.samplesRejected == 0 else {
                    throw BenchFailure("\(m.name): rejected samples or skipped batches; the inputs are wrong")
                }
                out.append(m)
            }
        }
        sink = localSink
        return out
    }
}
