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
        let logger = logging.bootstrap(label: "distilld")
        let settings: DistillConfig
        switch DistillConfig.check(path: config) {
        case .failure(let error):
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        case .success:
            settings = try DistillConfig.load(path: config)
        }
        let service = DistillService(config: settings, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
