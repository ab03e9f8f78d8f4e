import DistillCore
import Foundation

// MARK: - 4. In-process pipelines

/// The hot paths chained as the daemon chains them, on one thread and without Kafka: `monitor` = decode +
/// windows; `full` = decode + windows + online distillation (Hinton loss, teacher = latest). Baseline: the
/// decode rate measured in the same run. This is the closest in-process stand-in for issue 6's end-to-end
/// targets (Kafka consume measured 0.9–1.8 M msg/s here, so it is not the bound).
struct PipelineBenchmark {
    /// The records to decode.
    let corpus: SampleCorpus
    /// The same records decoded (to prefill the windows).
    let samples: [DistillSample]
    /// Samples per second of event time.
    let eventRate: Int

    /// Measures `monitor`, `full` (softmax regression) and `full` (MLP 64-64-16) against `decode`.
    func run(_ runner: BenchRunner, decode: Measurement, sink: inout UInt64) throws -> [Measurement] {
        let decoder = SampleDecoder(classes: SampleCorpus.classes, features: SampleCorpus.features)
        let records = corpus.records
        let jitters = records.indices.map(WindowIngestDriver.jitter)
        let config = WindowBenchmark.config(calibration: true)
        var out: [Measurement] = []
        var localSink = sink
        let cases: [(name: String, hidden: [Int]?, target: Double)] = [
            ("monitor: decode + windows", nil, WindowBenchmark.monitorTarget),
            ("full: decode + windows + learn (softmax, hinton)", [], LearnBenchmark.fullTargets.softmax),
            ("full: decode + windows + learn (MLP 64-64-16, hinton)", [64], LearnBenchmark.fullTargets.mlp),
        ]
        for (name, hidden, target) in cases {
            var driver = WindowIngestDriver(config: config, eventRate: eventRate)
            let prefilled = driver.prefill(samples, sink: &localSink)
            let distiller = try hidden.map {
                try OnlineDistiller(LearnBenchmark.configuration(hidden: $0, loss: .hinton()))
            }
            let temperature = distiller?.configuration.temperature ?? 1
            let latest = [SampleCorpus.teacherVersions[0]]
            var sample = DistillSample(classes: SampleCorpus.classes)
            var soft = [Float](repeating: 0, count: SampleCorpus.classes)
            var m = runner.measure("pipeline", name) {
                for (j, bytes) in records.enumerated() {
                    try! decoder.decode(bytes, into: &sample)
                    driver.ingest(&sample, jitter: jitters[j], sink: &localSink)
                    guard let distiller else { continue }
                    // `latest` strategy: the newest teacher's soft labels at temperature T.
                    let index = sample.teacherIndex(of: latest[0])!
                    soft.withUnsafeMutableBufferPointer { p in
                        sample.withTeacherLogits(at: index) { softmax($0, temperature: temperature, into: p) }
                    }
                    let o = soft.withUnsafeBufferPointer { target in
                        sample.features.withUnsafeBufferPointer { f in
                            distiller.learn(features: f, target: target, teacherVersions: latest, label: sample.label)
                        }
                    }
                    BlackHole.consume(o.emaPrediction, into: &localSink)
                }
                return records.count
            }
            m.compare(with: decode)
            m.notes.append("prefilled with \(prefilled) samples; then " + driver.summary)
            if hidden != nil { m.notes.append("batch \(LearnBenchmark.batchSize), Adam, T = 2, all labeled") }
            m.notes.append(verdict("issue 6 end-to-end", m.median, target, cpu: m.cpuMedian))
            out.append(m)
        }
        sink = localSink
        return out
    }
}
