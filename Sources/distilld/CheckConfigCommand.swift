import ArgumentParser
import DistillDaemon
import Foundation

/// `distilld check-config FILE`: validates a config without starting anything.
struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a config file (and its topics file) without starting anything."
    )

    @Argument(help: "The config file.")
    var file: String = "config/distilld.yaml"

    func run() async throws {
        switch DistillConfig.check(path: file) {
        case .success(let summary): print(summary)
        case .failure(let error):
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
