import DistillCore
@testable import DistillDaemon
import Foundation
import Testing

/// Model averaging without Kafka: worker engines' shares handed to a merger engine, each average checked against
/// weights computed here from the workers' own weights.
@Suite("Student averaging")
struct StudentAveragingTests {
    /// The demo config (softmax-regression student, 4 features, 4 classes) with scale-out on.
    static func config() throws -> DistillConfig {
        var yaml = try String(contentsOf: packageRoot.appendingPathComponent("config/demo.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(
            of: "topics_file: streams/topics.yaml",
            with: "topics_file: \"\(packageRoot.appendingPathComponent("streams/topics.yaml").path)\"")
        yaml = yaml.replacingOccurrences(of: "state: {dir: .distilld/demo-state, interval: 2s, on_corrupt: reset}",
                                         with: "state: {dir: /nonexistent, interval: 300ms}\nscale_out: {enabled: true}")
        yaml = yaml.replacingOccurrences(of: "http: {listen: \"127.0.0.1:9464\"}", with: "http: {enabled: false}")
        return try DistillConfig.parse(yaml)
    }

    /// Engines that know the rotation's teachers, and the rotation's samples.
    struct Fixture {
        let config: DistillConfig
        let records: [[UInt8]]
        let teachers: [[UInt8]]
        var offset = 0

        init() throws {
            config = try StudentAveragingTests.config()
            let root = packageRoot.appendingPathComponent("streams/examples").path
            teachers = try JSONLReplayer(path: root + "/rotation-teachers.jsonl", topic: "teachers").records()
            records = try JSONLReplayer(path: root + "/rotation.jsonl", topic: "samples").records()
        }

        func engine(_ role: DistillEngine.Role) throws -> DistillEngine {
            let engine = try DistillEngine(config: config, role: role)
            if role == .worker { engine.partitionsAssigned([0]) }
            for (i, t) in teachers.enumerated() {
                _ = engine.handleTeacher(t, key: nil, at: InputPosition(topic: "teachers", partition: 0,
                                                                          offset: Int64(i)))
            }
            return engine
        }

        /// The worker learns from the next `count` samples of the stream.
        mutating func train(_ worker: DistillEngine, _ count: Int) {
            for r in records[offset..<(offset + count)] {
                _ = worker.handleSample(r, key: nil, at: InputPosition(topic: "samples", partition: 0,
                                                                         offset: Int64(offset)))
                offset += 1
            }
        }
    }

    static func weights(_ engine: DistillEngine) throws -> StudentWeights {
        let d = try #require(engine.distiller)
        return StudentWeights(trained: d.model.parameterArray, ema: d.emaParameterArray)
    }

    /// The largest absolute difference between two weight vectors (trained and EMA).
    static func distance(_ a: StudentWeights, _ b: StudentWeights) -> Float {
        zip(a.trained + a.ema, b.trained + b.ema).map { abs($0 - $1) }.max() ?? .infinity
    }

    static func combine(_ terms: [(Float, StudentWeights)]) -> StudentWeights {
        let n = terms[0].1.trained.count
        var out = StudentWeights(trained: .init(repeating: 0, count: n), ema: .init(repeating: 0, count: n))
        for (c, w) in terms {
            for i in 0..<n {
                out.trained[i] += c * w.trained[i]
                out.ema[i] += c * w.ema[i]
            }
        }
        return out
    }

    @Test("Shares from the same average make the mean of the workers' weights, weighted by their samples")
    func sameBaseIsWeightedMean() throws {
        var f = try Fixture()
        let a = try f.engine(.worker), b = try f.engine(.worker), merger = try f.engine(.merger)
        f.train(a, 300)
        f.train(b, 200)
        let wa = try Self.weights(a), wb = try Self.weights(b)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        merger.handleShare(try #require(b.studentShare(writer: 2)))
        #expect(merger.waitingShareWriters == [1, 2])
        let (average, _) = try #require(merger.averageStudents(at: 0))
        let expected = Self.combine([(0.6, wa), (0.4, wb)])
        #expect(Self.distance(StudentWeights(trained: average.trained, ema: average.ema), expected) < 1e-5)
        #expect(average.round == 1 && average.samples == 500 && average.contributors == [1: 1, 2: 1])
        #expect(Self.distance(wa, wb) > 1e-3, "the two workers learned different weights")

        // Both adopt it: nothing learned since their shares, so each now holds the average.
        a.adoptAverage(average, writer: 1)
        b.adoptAverage(average, writer: 2)
        #expect(Self.distance(try Self.weights(a), expected) < 1e-5)
        #expect(Self.distance(try Self.weights(b), expected) < 1e-5)
        #expect(a.studentShare(writer: 1) == nil, "nothing learned since the adoption: no share")
    }

    @Test("A share based on an older average keeps the progress of the rounds after it")
    func staleShareKeepsLaterProgress() throws {
        var f = try Fixture()
        let a = try f.engine(.worker), b = try f.engine(.worker), merger = try f.engine(.merger)
        f.train(a, 200)
        f.train(b, 200)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        merger.handleShare(try #require(b.studentShare(writer: 2)))
        let (first, _) = try #require(merger.averageStudents(at: 0))
        a.adoptAverage(first, writer: 1)
        b.adoptAverage(first, writer: 2)
        let g1 = StudentWeights(trained: first.trained, ema: first.ema)

        // Round 2 holds A's share only; B, still learning, misses it and shares later from round 1.
        f.train(a, 300)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        let (second, _) = try #require(merger.averageStudents(at: 0))
        #expect(Self.distance(StudentWeights(trained: second.trained, ema: second.ema), try Self.weights(a)) < 1e-5)
        f.train(b, 300)
        b.adoptAverage(second, writer: 2)  // refused: B learned since round 1 and round 2 lacks its progress
        let wb = try Self.weights(b)
        let share = try #require(b.studentShare(writer: 2))
        #expect(share.basedOn == 1)
        merger.handleShare(share)
        let (third, _) = try #require(merger.averageStudents(at: 0))

        // Round 3 = round 2 + B's progress since round 1 (its weights minus round 1's).
        let g2 = StudentWeights(trained: second.trained, ema: second.ema)
        let expected = Self.combine([(1, g2), (1, wb), (-1, g1)])
        let got = StudentWeights(trained: third.trained, ema: third.ema)
        #expect(Self.distance(got, expected) < 1e-5)
        // Taking B's weights as they are (the rule before) would have dropped A's 300 samples of round 2.
        #expect(Self.distance(got, wb) > 1e-3)
        #expect(third.samplesTotal == 1_000)
    }

    @Test("A share trained from the initial weights once rounds exist is mixed in by samples, not added as progress")
    func initialBasedShareIsMixedBySamples() throws {
        var f = try Fixture()
        let a = try f.engine(.worker), merger = try f.engine(.merger)
        f.train(a, 600)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        let (first, _) = try #require(merger.averageStudents(at: 0))
        // C could not read an average at start: it learned from the initial weights.
        let c = try f.engine(.worker)
        f.train(c, 200)
        let wc = try Self.weights(c)
        let share = try #require(c.studentShare(writer: 3))
        #expect(share.basedOn == 0)
        merger.handleShare(share)
        let (second, _) = try #require(merger.averageStudents(at: 0))
        let expected = Self.combine([(0.75, StudentWeights(trained: first.trained, ema: first.ema)), (0.25, wc)])
        #expect(Self.distance(StudentWeights(trained: second.trained, ema: second.ema), expected) < 1e-5)
    }

    @Test("A worker that starts from the newest average shares its progress over it")
    func joiningWorkerStartsFromNewestAverage() throws {
        var f = try Fixture()
        let a = try f.engine(.worker), merger = try f.engine(.merger)
        f.train(a, 400)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        let (first, _) = try #require(merger.averageStudents(at: 0))
        let g1 = StudentWeights(trained: first.trained, ema: first.ema)

        let d = try f.engine(.worker)
        d.adoptAverage(first, writer: 4)  // at start, before it learned anything
        #expect(Self.distance(try Self.weights(d), g1) < 1e-6)
        f.train(d, 200)
        let wd = try Self.weights(d)
        let share = try #require(d.studentShare(writer: 4))
        #expect(share.basedOn == 1)
        let progress = StudentWeights(trained: share.trainedProgress, ema: share.emaProgress)
        #expect(Self.distance(progress, Self.combine([(1, wd), (-1, g1)])) < 1e-6)
    }

    @Test("A merger taking over continues from the newest average: the merge state's, or a newer one on the topic")
    func takeoverResumesFromNewestAverage() throws {
        var f = try Fixture()
        let a = try f.engine(.worker), merger = try f.engine(.merger)
        f.train(a, 300)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        let (first, _) = try #require(merger.averageStudents(at: 0))
        let state = try StateBinaryDecoder().decode(
            MergeState.self, from: try StateBinaryEncoder().encode(merger.mergeState()))

        // From the merge state alone.
        let next = try f.engine(.merger)
        try next.restoreMerge(state)
        next.resumeAveraging(after: nil)
        #expect(next.studentBook.round == 1)
        #expect(Self.distance(try Self.weights(next), StudentWeights(trained: first.trained, ema: first.ema)) < 1e-6)

        // A newer average published after that state wins.
        a.adoptAverage(first, writer: 1)
        f.train(a, 200)
        merger.handleShare(try #require(a.studentShare(writer: 1)))
        let (second, _) = try #require(merger.averageStudents(at: 0))
        let later = try f.engine(.merger)
        try later.restoreMerge(state)
        later.resumeAveraging(after: second)
        #expect(later.studentBook.round == 2)
        #expect(Self.distance(try Self.weights(later), StudentWeights(trained: second.trained, ema: second.ema)) < 1e-6)
    }

    // MARK: Round pacing

    @Test("A round waits for every worker heard from lately, at most maxWait, and stops waiting for a silent one")
    func roundPacing() {
        let t0 = ContinuousClock.now
        var pacer = AveragingRoundPacer(maxWait: .seconds(1), activeFor: .seconds(10))
        #expect(!pacer.roundDue(waiting: [], at: t0))
        #expect(pacer.roundDue(waiting: [7], at: t0), "shares restored with a merge state do not wait")

        pacer.shareArrived(from: 1, at: t0)
        pacer.shareArrived(from: 2, at: t0 + .milliseconds(100))
        #expect(pacer.roundDue(waiting: [1, 2], at: t0 + .milliseconds(200)))
        pacer.roundMade(at: t0 + .milliseconds(200))

        // Next round: worker 1 shares, worker 2 is late.
        pacer.shareArrived(from: 1, at: t0 + .milliseconds(500))
        #expect(!pacer.roundDue(waiting: [1], at: t0 + .milliseconds(900)))
        #expect(pacer.roundDue(waiting: [1], at: t0 + .milliseconds(1_500)), "waited maxWait")
        pacer.roundMade(at: t0 + .milliseconds(1_500))

        // Worker 2 has been silent for activeFor: it is no longer waited for.
        pacer.shareArrived(from: 1, at: t0 + .seconds(11))
        #expect(pacer.roundDue(waiting: [1], at: t0 + .seconds(11)))
        #expect(AveragingRoundPacer(checkpointInterval: .milliseconds(300)).maxWait == .seconds(1))
        #expect(AveragingRoundPacer(checkpointInterval: .seconds(2)).maxWait == .seconds(4))
    }
}
