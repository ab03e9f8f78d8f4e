import DistillCore
import Foundation
import Testing

@testable import DistillDaemon

/// A checkpoint's handoff of the engine state: the same bytes as the state's own encoding, and it lets go of each
/// large part as it writes it, so what the loop replaces meanwhile is not held until the checkpoint ends.
@Suite("Engine state handoff")
struct EngineStateHandoffTests {
    /// The bytes of a streamed encoding, patched as a checkpoint file's are.
    static func streamed(_ value: some Encodable, spillBytes: Int, onSpill: () -> Void = {}) throws -> [UInt8] {
        var out: [UInt8] = []
        let (count, patches) = try StateBinaryEncoder().encode(value, spillBytes: spillBytes) { bytes in
            out += bytes
            onSpill()
        }
        #expect(out.count == count)
        for patch in patches { out.replaceSubrange(patch.offset..<patch.offset + 4, with: patch.bytes) }
        return out
    }

    @Test("A handoff writes the label join, the recent ids, then the windows, and holds none of them once written")
    func releasesEachPartOnceWritten() throws {
        let state = try StateBinaryCoderTests.engineState(waiting: 300)
        let expected = try StateBinaryEncoder().encode(state)
        let handoff = EngineStateHandoff(state)
        let start = try #require(handoff.holding)
        #expect(start.waitingSamples >= 300 && start.recentIDs > 300 && start.openPanes > 0, "\(start)")

        // At every spill (every 64 bytes or so), which parts the handoff no longer holds.
        var released: [String] = []
        let bytes = try Self.streamed(handoff, spillBytes: 64) {
            guard let h = handoff.holding else { return released.append("all") }
            let now = (h.waitingSamples == 0 ? "join" : "") + (h.recentIDs == 0 ? "+ids" : "")
                + (h.openPanes == 0 ? "+windows" : "")
            if released.last != now { released.append(now) }
        }
        #expect(bytes == expected, "a handoff writes what the state's own encoding does")
        // The label join goes first (while it is written, nothing else is let go), then the recent ids, then the
        // windows; the rest is small. The last spill comes after the whole state is written.
        #expect(released == ["join", "join+ids", "join+ids+windows", "all"], "\(released)")
        #expect(handoff.holding == nil)
        #expect(throws: EncodingError.self, "a handoff is written once") { try StateBinaryEncoder().encode(handoff) }
        // What was written is the state: it restores (the round trip is checked field by field elsewhere).
        let restored = try DistillEngine(config: DistillConfig.parse(scenarioConfig))
        try restored.restore(bytes)
        #expect(restored.state().labelJoin.waitingSamples == start.waitingSamples)
        #expect(restored.state().recentIDs.count == start.recentIDs)
    }

    @Test("The engine goes on while its handoff is written: the checkpoint holds the state as it was taken")
    func engineGoesOnMeanwhile() throws {
        let engine = try StateBinaryCoderTests.engine(waiting: 300)
        let expected = try StateBinaryEncoder().encode(engine.state())
        let handoff = EngineStateHandoff(engine.state())
        let waiting = try #require(handoff.holding).waitingSamples
        // The loop goes on before the checkpoint thread starts, and while it writes.
        StateBinaryCoderTests.addWaiting(200, to: engine, offset: 10_000, first: 300)
        var spills = 0
        let bytes = try Self.streamed(handoff, spillBytes: 4096) {
            spills += 1
            if spills == 2 { StateBinaryCoderTests.addWaiting(200, to: engine, offset: 10_000, first: 500) }
        }
        #expect(spills > 2)
        #expect(bytes == expected, "the handoff wrote the state as it was taken")
        #expect(engine.state().labelJoin.waitingSamples == waiting + 400, "the engine's own state went on")
        #expect(try StateBinaryEncoder().encode(engine.state()) != expected)
    }
}
