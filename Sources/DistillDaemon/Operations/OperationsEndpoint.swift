import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

// MARK: - OperationsEndpoint

/// The operator's HTTP endpoint, a `Service`: `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` and
/// `GET /readyz`.
///
/// It binds 127.0.0.1:9464 unless told otherwise: metrics name topics and groups, so exposing them beyond the host
/// is an explicit choice. Port 0 picks a free port; ``boundAddress()`` tells which.
///
/// Put it first in the daemon's `ServiceGroup`: services stop in reverse order, so it stops last and `/readyz`
/// keeps answering 503 "shutting down" while the pipeline drains. It does not call ``HealthState/shutdownBegan()``
/// itself, since it learns of the shutdown last.
public final class OperationsEndpoint: Service, Sendable {
    /// The default host: loopback only.
    public static let defaultHost = "127.0.0.1"
    /// The default port, the one issue 5 names.
    public static let defaultPort = 9464
    /// `Content-Type` of `/metrics`: the Prometheus text exposition format 0.0.4.
    public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The host to bind, an address or a name.
    public let host: String
    /// The port to bind; 0 picks a free one.
    public let port: Int

    private let metrics: DistillMetrics
    private let health: HealthState
    private let logger: Logger
    private let binding = EndpointBinding()

    /// Creates the endpoint; nothing is bound until ``run()``.
    ///
    /// - Parameters:
    ///   - host: The host to bind; loopback by default.
    ///   - port: The port to bind, 0...65535; 0 picks a free one.
    ///   - metrics: What `/metrics` emits.
    ///   - health: What `/healthz` and `/readyz` report.
    ///   - logger: For the server's start, stop and errors.
    public init(
        host: String = OperationsEndpoint.defaultHost,
        port: Int = OperationsEndpoint.defaultPort,
        metrics: DistillMetrics,
        health: HealthState,
        logger: Logger
    ) {
        self.host = host
        self.port = port
        self.metrics = metrics
        self.health = health
        self.logger = logger
    }

    /// Binds, serves until graceful shutdown or cancellation, then drains open requests.
    ///
    /// - Throws: The bind error (port in use, unknown host, ...) or a server failure.
    public func run() async throws {
        let binding = self.binding
        let application = Application(
            router: makeRouter(),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                // Report the host asked for when NIO gives no address, so waiters are never left hanging.
                let address = channel.localAddress
                binding.bound(
                    OperationsEndpointAddress(
                        host: address?.ipAddress ?? self.host,
                        port: address?.port ?? self.port
                    )
                )
            },
            logger: logger
        )
        do {
            try await application.run()
        } catch {
            binding.finished(error)
            throw error
        }
        binding.finished(nil)
    }

    /// The address the server listens on, once it does; waits for ``run()`` to bind.
    ///
    /// - Throws: `OperationsEndpointError.notBound` with the cause if the server stopped or failed before binding,
    ///   `CancellationError` if the waiting task is cancelled.
    public func boundAddress() async throws -> OperationsEndpointAddress {
        try await binding.wait()
    }

    // MARK: - Routes

    private func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        let metrics = self.metrics
        let health = self.health
        router.get("/metrics") { _, _ -> Response in
            var buffer = ByteBuffer()
            buffer.writeBytes(metrics.renderBytes())
            return Response(
                status: .ok,
                headers: [.contentType: OperationsEndpoint.metricsContentType],
                body: ResponseBody(byteBuffer: buffer)
            )
        }
        router.get("/healthz") { _, _ -> Response in
            let status = health.status
            return Self.plainText(status.isLive ? .ok : .serviceUnavailable, status.isLive ? "ok" : status.reason)
        }
        router.get("/readyz") { _, _ -> Response in
            let status = health.status
            return Self.plainText(status.isReady ? .ok : .serviceUnavailable, status.isReady ? "ok" : status.reason)
        }
        return router
    }

    private static func plainText(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text + "\n"))
        )
    }
}

// MARK: - OperationsEndpointAddress

/// Where the endpoint listens.
public struct OperationsEndpointAddress: Sendable, Equatable, CustomStringConvertible {
    /// The numeric address bound, e.g. `127.0.0.1`.
    public var host: String
    /// The port bound; the one picked when 0 was asked for.
    public var port: Int

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with brackets around an IPv6 host.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

// MARK: - OperationsEndpointError

/// Why ``OperationsEndpoint/boundAddress()`` has no address to give.
public struct OperationsEndpointError: Error, Sendable, CustomStringConvertible {
    /// A stable, greppable identifier: `operations.not_bound`.
    public let code = "operations.not_bound"
    /// What went wrong and what to do.
    public let reason: String

    /// Creates an error with a human reason.
    public init(reason: String) {
        self.reason = reason
    }

    /// `code: reason`.
    public var description: String { "\(code): \(reason)" }
}

// MARK: - EndpointBinding

/// The bound address, handed from the server's start-up callback to whoever waits for it.
final class EndpointBinding: Sendable {
    private enum State {
        case waiting([Int: CheckedContinuation<OperationsEndpointAddress, any Error>], nextID: Int)
        case bound(OperationsEndpointAddress)
        case finished(OperationsEndpointError)
    }

    private let state = Mutex(State.waiting([:], nextID: 0))

    func bound(_ address: OperationsEndpointAddress) {
        let waiters = state.withLock { state -> [CheckedContinuation<OperationsEndpointAddress, any Error>] in
            guard case .waiting(let waiters, _) = state else { return [] }
            state = .bound(address)
            return Array(waiters.values)
        }
        for waiter in waiters {
            waiter.resume(returning: address)
        }
    }

    /// The server stopped; waiters from now on get an error, since the port may already be someone else's.
    func finished(_ cause: (any Error)?) {
        let error = OperationsEndpointError(
            reason: cause.map { "the endpoint failed: \($0); check the host and that the port is free" }
                ?? "the endpoint has stopped"
        )
        let waiters = state.withLock { state -> [CheckedContinuation<OperationsEndpointAddress, any Error>] in
            defer { state = .finished(error) }
            guard case .waiting(let waiters, _) = state else { return [] }
            return Array(waiters.values)
        }
        for waiter in waiters {
            waiter.resume(throwing: error)
        }
    }

    func wait() async throws -> OperationsEndpointAddress {
        let id = state.withLock { state -> Int? in
            guard case .waiting(let waiters, let nextID) = state else { return nil }
            state = .waiting(waiters, nextID: nextID + 1)
            return nextID
        }
        guard let id else { return try current() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    guard case .waiting(var waiters, let nextID) = state else { return true }
                    guard !Task.isCancelled else { return true }
                    waiters[id] = continuation
                    state = .waiting(waiters, nextID: nextID)
                    return false
                }
                guard resumeNow else { return }
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    continuation.resume(with: Result { try current() })
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<OperationsEndpointAddress, any Error>? in
                guard case .waiting(var waiters, let nextID) = state else { return nil }
                let waiter = waiters.removeValue(forKey: id)
                state = .waiting(waiters, nextID: nextID)
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func current() throws -> OperationsEndpointAddress {
        try state.withLock { state in
            switch state {
            case .bound(let address): return address
            case .finished(let error): throw error
            case .waiting: throw OperationsEndpointError(reason: "the endpoint is not bound yet")
            }
        }
    }
}
