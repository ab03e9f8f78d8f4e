import DistillDaemon
import Logging
import ServiceLifecycle
import Testing

// MARK: - Harness

/// Runs an endpoint on 127.0.0.1 port 0 in a `ServiceGroup`, hands `body` its port, then shuts the group down
/// gracefully and checks that it stopped cleanly.
private func withOperationsEndpoint(
    metrics: DistillMetrics = DistillMetrics(),
    health: HealthState = HealthState(),
    _ body: (_ endpoint: OperationsEndpoint, _ port: Int) async throws -> Void
) async throws {
    var logger = Logger(label: "distilld.operations.test")
    logger.logLevel = .warning
    let endpoint = OperationsEndpoint(host: "127.0.0.1", port: 0, metrics: metrics, health: health, logger: logger)
    let group = ServiceGroup(
        configuration: ServiceGroupConfiguration(services: [endpoint], gracefulShutdownSignals: [], logger: logger)
    )
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let address = try await endpoint.boundAddress()
            try await body(endpoint, address.port)
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        // Throws if the endpoint failed instead of draining.
        try await tasks.waitForAll()
    }
}

// MARK: - Endpoint

@Suite("OperationsEndpoint over HTTP", .hangGuard())
struct OperationsEndpointTests {
    @Test("binds loopback by default and on port 0 reports the port it picked")
    func loopbackBinding() async throws {
        #expect(OperationsEndpoint.defaultHost == "127.0.0.1")
        #expect(OperationsEndpoint.defaultPort == 9464)
        try await withOperationsEndpoint { endpoint, port in
            let address = try await endpoint.boundAddress()
            #expect(address.host == "127.0.0.1")
            #expect(port > 0 && port != 9464)
            #expect(address.description == "127.0.0.1:\(port)")
        }
    }

    @Test("/healthz is 200 ok while live and 503 with the reason after a failure")
    func healthz() async throws {
        let health = HealthState()
        try await withOperationsEndpoint(health: health) { _, port in
            let live = try await operationsGet(port: port, path: "/healthz")
            #expect(live.status == 200)
            #expect(live.body == "ok\n")

            health.failed(reason: "consumer fenced")
            let dead = try await operationsGet(port: port, path: "/healthz")
            #expect(dead.status == 503)
            #expect(dead.body == "consumer fenced\n")
        }
    }

    @Test("/readyz is 503 with the reason until restore and assignment, 200 after, 503 again on shutdown")
    func readyz() async throws {
        let health = HealthState()
        try await withOperationsEndpoint(health: health) { _, port in
            let starting = try await operationsGet(port: port, path: "/readyz")
            #expect(starting.status == 503)
            #expect(starting.body == "restoring state\n")

            health.stateRestored()
            health.partitionsAssigned()
            let ready = try await operationsGet(port: port, path: "/readyz")
            #expect(ready.status == 200)
            #expect(ready.body == "ok\n")

            health.shutdownBegan()
            let draining = try await operationsGet(port: port, path: "/readyz")
            #expect(draining.status == 503)
            #expect(draining.body == "shutting down\n")
        }
    }

    @Test("/metrics serves the text format 0.0.4 with the counters incremented")
    func metricsEndpoint() async throws {
        let metrics = DistillMetrics()
        try await withOperationsEndpoint(metrics: metrics) { _, port in
            metrics.deadLetter(reason: "not_finite")
            metrics.deadLetter(reason: "not_finite")
            metrics.samplesIngested(3)
            for index in 0..<101 {
                metrics.alertEmitted(type: "type_\(index)")
            }
            let reply = try await operationsGet(port: port, path: "/metrics")
            #expect(reply.status == 200)
            #expect(reply.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
            #expect(reply.lines.contains(#"distilld_dead_letters_total{reason="not_finite"} 2"#))
            #expect(reply.lines.contains(#"distilld_samples_total{outcome="ingested"} 3"#))
            #expect(reply.lines.contains(#"distilld_alerts_total{type="other"} 1"#))
            #expect(reply.lines.contains("# TYPE distilld_samples_total counter"))
        }
    }

    @Test("unknown paths are 404")
    func notFound() async throws {
        try await withOperationsEndpoint { _, port in
            let reply = try await operationsGet(port: port, path: "/debug")
            #expect(reply.status == 404)
        }
    }

    @Test("graceful shutdown closes the port and ends boundAddress()")
    func shutdown() async throws {
        var closedPort = 0
        var lastEndpoint: OperationsEndpoint?
        try await withOperationsEndpoint { endpoint, port in
            #expect(await operationsCanConnect(port: port))
            closedPort = port
            lastEndpoint = endpoint
        }
        #expect(await !operationsCanConnect(port: closedPort))
        await #expect(throws: OperationsEndpointError.self) {
            _ = try await lastEndpoint?.boundAddress()
        }
    }

    @Test("a port already in use fails run() and boundAddress() instead of hanging")
    func portInUse() async throws {
        try await withOperationsEndpoint { _, port in
            var logger = Logger(label: "distilld.operations.test")
            logger.logLevel = .critical
            let second = OperationsEndpoint(
                host: "127.0.0.1",
                port: port,
                metrics: DistillMetrics(),
                health: HealthState(),
                logger: logger
            )
            await #expect(throws: (any Error).self) { try await second.run() }
            await #expect(throws: OperationsEndpointError.self) { _ = try await second.boundAddress() }
        }
    }
}
