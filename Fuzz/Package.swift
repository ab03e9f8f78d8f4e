// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for distilld's parsers of untrusted input (issue #7). Run them with `scripts/fuzz.sh`.
//
// SwiftPM refuses target paths outside the package root, so `Linked/` holds committed symlinks into the main
// package's `Sources/`: these targets compile the very files that distilld ships, never copies of them.
// `DistillDaemon` here is only `Sources/DistillDaemon/Config` (the config parser and its YAML layer), not the whole
// daemon, so no swift-nio, Hummingbird or Prometheus is built under the fuzzer.
//
// Build (what scripts/fuzz.sh runs):
//   swift build -c release --scratch-path .build -Xswiftc -sanitize=fuzzer,address
// Each executable's top-level code hands control to libFuzzer's driver (`FuzzDriver.run`): SwiftPM links every
// executable with `--defsym main=<Target>_main`, so libFuzzer's own `main` is never the entry point.
let package = Package(
    name: "distilld-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // MARK: - The main package's sources, through Linked/

        .target(name: "DistillCore", path: "Linked/DistillCore"),
        .systemLibrary(
            name: "CRdKafka",
            path: "Linked/CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "KafkaClient",
            dependencies: ["CRdKafka", .product(name: "Logging", package: "swift-log")],
            path: "Linked/KafkaClient"
        ),
        .target(
            name: "DistillDaemon",
            dependencies: ["DistillCore", "KafkaClient", .product(name: "Yams", package: "Yams")],
            path: "Linked/DistillDaemonConfig"
        ),

        // MARK: - Fuzz targets

        .target(name: "FuzzSupport"),
        .executableTarget(name: "FuzzSampleDecoder", dependencies: ["DistillCore", "FuzzSupport"]),
        .executableTarget(name: "FuzzTeacherRecord", dependencies: ["DistillCore", "FuzzSupport"]),
        .executableTarget(name: "FuzzConfig", dependencies: ["DistillDaemon", "DistillCore", "FuzzSupport"]),
    ]
)
