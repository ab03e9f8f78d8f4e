import ArgumentParser
import DistillDaemon
import Logging

/// Logging flags shared by every subcommand.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "Log format: human or json (overrides the config's logging.format).")
    var logFormat: String?

    /// Sends logs to stderr at the chosen level and format and returns a logger. `configured` comes from the
    /// config file; command-line flags win when given.
    func bootstrap(label: String, configured: LoggingSettings? = nil) -> Logger {
        var level = logLevel
        if !levelWasSet, let text = configured?.level, let parsed = Logger.Level(rawValue: text) { level = parsed }
        let json = (logFormat ?? configured?.format.rawValue) == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }

    private var levelWasSet: Bool { CommandLine.arguments.contains("--log-level") }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
