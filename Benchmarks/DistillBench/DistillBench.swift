import DistillCore
import Foundation

// MARK: - Entry point

/// `distilld-bench`: micro-benchmarks of DistillCore's hot paths. Every rate is printed with its ratio against
/// a baseline measured in the same run (STYLE rule 10). Run it from a release build:
///
///     swift build -c release --product distilld-bench && .build/release/distilld-bench [--quick] [--json]
@main
struct DistillBench {
    /// Parses the options, runs the selected benchmarks and prints the table or the JSON object.
    static func main() {
        let options: BenchOptions
        do {
            options = try BenchOptions.parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            if let message = error.message {
                FileHandle.standardError.write(Data("distilld-bench: \(message)\n\n\(BenchOptions.usage)\n".utf8))
                exit(2)
            }
            print(BenchOptions.usage)
            return
        }
        do {
            let report = try run(options)
            print(options.json ? report.json() : report.table())
        } catch {
            FileHandle.standardError.write(Data("distilld-bench: \(error)\n".utf8))
            exit(1)
        }
    }

    /// Runs the selected benchmarks in order: decode (the baseline of windows and pipelines), learn, windows,
    /// pipelines.
    static func run(_ options: BenchOptions) throws -> BenchReport {
        let runner = BenchRunner(options: options)
        let progress = !options.json
        func say(_ text: String) {
            if progress { FileHandle.standardError.write(Data("… \(text)\n".utf8)) }
        }
        var report = BenchReport(options: options)
        var sink: UInt64 = 0
        let start = ContinuousClock.now

        say("generating \(options.records) records (seed \(options.seed))")
        let corpus = SampleCorpus(count: options.records, seed: options.seed)
        report.recordBytes = corpus.meanBytes
        let samples = try corpus.decodedSamples()

        var decodeRate: Measurement?
        if options.runs("decode") || options.runs("windows") || options.runs("pipeline") {
            say("decode")
            let m = try DecodeBenchmark(corpus: corpus).run(runner, sink: &sink)
            report.results += m
            decodeRate = m.first { $0.name == "SampleDecoder.decode(_:into:)" }
        }
        if options.runs("learn") {
            say("learn")
            report.results += try LearnBenchmark(samples: samples).run(runner, sink: &sink)
        }
        if options.runs("windows"), let decodeRate {
            say("windows")
            report.results += try WindowBenchmark(samples: samples, eventRate: options.eventRate,
                                              timeDriftClose: !options.quick)
                .run(runner, decode: decodeRate, sink: &sink)
        }
        if options.runs("pipeline"), let decodeRate {
            say("pipeline")
            report.results += try PipelineBenchmark(corpus: corpus, samples: samples, eventRate: options.eventRate)
                .run(runner, decode: decodeRate, sink: &sink)
        }
        report.seconds = start.duration(to: .now).seconds
        report.peakRSSKiB = ProcessStatus.peakRSSKiB()
        report.checksum = String(sink, radix: 16)
        return report
    }
}
