import ArgumentParser
import DistillDaemon
import Foundation
import Logging
import ServiceLifecycle

/// `distilld run`: the daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon: consume samples, keep windows and the online student, publish alerts."
    )

    @Option(help: "The config file.")
    var config: String = "config/distilld.yaml"

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let settings: DistillConfig
        switch DistillConfig.check(path: config) {
        case .failure(let error):
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        case .success:
            settings = try DistillConfig.load(path: config)
        }
        let logger = logging.bootstrap(label: "distilld", configured: settings.logging)
        let service = DistillService(config: settings, logger: logger, configPath: config)
        var services: [any Service] = []
        if settings.http.enabled {
            // First in the group, so it stops last and /readyz reports the shutdown.
            services.append(OperationsEndpoint(
                host: settings.http.host, port: settings.http.port, metrics: service.metrics, health: service.health,
                logger: logger))
        }
        services.append(service)
        let group = ServiceGroup(configuration: .init(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
