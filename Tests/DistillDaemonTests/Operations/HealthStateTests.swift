import DistillDaemon
import Testing

@Suite("HealthState transitions")
struct HealthStateTests {
    @Test("ready only after both the state restore and the partition assignment")
    func readiness() {
        let health = HealthState()
        #expect(health.status == .init(isLive: true, isReady: false, reason: "restoring state"))
        health.partitionsAssigned()
        #expect(!health.isReady)
        health.stateRestored()
        #expect(health.status == .init(isLive: true, isReady: true, reason: "ok"))
    }

    @Test("a rebalance makes it not ready until the next assignment")
    func rebalance() {
        let health = HealthState()
        health.stateRestored()
        health.partitionsAssigned()
        health.partitionsRevoked()
        #expect(health.status == .init(isLive: true, isReady: false, reason: "waiting for partition assignment"))
        health.partitionsAssigned()
        #expect(health.isReady)
    }

    @Test("shutdown is final for readiness but keeps liveness")
    func shutdown() {
        let health = HealthState()
        health.stateRestored()
        health.partitionsAssigned()
        health.shutdownBegan()
        health.partitionsAssigned()
        #expect(health.status == .init(isLive: true, isReady: false, reason: "shutting down"))
    }

    @Test("a failure ends liveness, and a later shutdown does not hide it")
    func failure() {
        let health = HealthState()
        health.stateRestored()
        health.partitionsAssigned()
        health.failed(reason: "consumer fenced")
        health.shutdownBegan()
        #expect(health.status == .init(isLive: false, isReady: false, reason: "consumer fenced"))
    }
}
