// swift-tools-version: 6.1
import PackageDescription

// Dependencies point one way: distilld -> DistillDaemon -> (KafkaClient, DistillCore); KafkaClient -> CRdKafka.
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
        .target(
            name: "DistillDaemon",
            dependencies: [
                "KafkaClient",
                "DistillCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "distilld",
            dependencies: [
                "DistillDaemon",
                "KafkaClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
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
            dependencies: ["DistillDaemon", "KafkaClient"]
        ),
    ]
)
