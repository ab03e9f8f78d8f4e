// swift-tools-version: 6.1
import PackageDescription

// Dependencies point one way: distilld -> DistillDaemon -> (KafkaClient, DistillWire -> DistillCore);
// KafkaClient -> CRdKafka.
let package = Package(
    name: "distilld",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "distilld", targets: ["distilld"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // Runtime library only: the generated code is committed (scripts/gen-proto.sh), so no build needs the plugin.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(
            name: "KafkaClient",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "DistillCore",
            dependencies: []
        ),
        // The protobuf wire format of samples and labels (proto/distill/v1/records.proto): generated messages and a
        // decoder into DistillCore's records. Pure, no I/O; apart from DistillCore so that stays dependency-free.
        .target(
            name: "DistillWire",
            dependencies: [
                "DistillCore",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(
            name: "DistillDaemon",
            dependencies: [
                "KafkaClient",
                "DistillCore",
                "DistillWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                // The endpoint reads its bound port from the channel; Hummingbird does not re-export NIOCore.
                .product(name: "NIOCore", package: "swift-nio"),
                // `distilld bench` reports latency percentiles from an HdrHistogram.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "distilld",
            dependencies: [
                "DistillDaemon",
                "DistillWire",
                "KafkaClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Micro-benchmarks of the hot paths, apart from the tests (`make bench`).
        .executableTarget(
            name: "distilld-bench",
            dependencies: ["DistillCore", "DistillWire"],
            path: "Benchmarks/DistillBench"
        ),
        .testTarget(
            name: "KafkaClientTests",
            dependencies: ["KafkaClient"]
        ),
        .testTarget(
            name: "DistillCoreTests",
            dependencies: [
                "DistillCore",
                .product(name: "Numerics", package: "swift-numerics"),
            ]
        ),
        .testTarget(
            name: "DistillDaemonTests",
            dependencies: [
                "DistillDaemon",
                "KafkaClient",
                "DistillCore",
                "DistillWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
    ]
)
