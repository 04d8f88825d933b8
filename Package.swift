// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Flowline",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "flowline", targets: ["flowline"]),
        .library(name: "FlowVM", targets: ["FlowVM"]),
        .library(name: "FlowCompiler", targets: ["FlowCompiler"]),
        .library(name: "Connectors", targets: ["Connectors"]),
        .library(name: "FlowEngine", targets: ["FlowEngine"]),
        .library(name: "FlowStore", targets: ["FlowStore"]),
        .library(name: "FlowConnector", targets: ["FlowConnector"]),
        .library(name: "CRMConnector", targets: ["CRMConnector"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .target(
            name: "FlowVM",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "FlowCompiler",
            dependencies: ["FlowVM", .product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "Connectors",
            dependencies: [
                "FlowVM", "FlowEngine",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        // The connector SDK: `Connector`, `ConnectorContext`, `ConnectorError`, `CredentialDefinition`, `ResumeLink`.
        // A custom connector depends on this (and FlowVM) alone.
        .target(
            name: "FlowConnector",
            dependencies: [
                "FlowVM",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "FlowEngine",
            dependencies: [
                "FlowConnector", "FlowVM", .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "FlowStore",
            dependencies: [
                "FlowEngine", "FlowVM",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The example custom connector of docs/connectors.md: copy it to write your own.
        .target(
            name: "CRMConnector",
            dependencies: [
                "FlowConnector", "FlowVM",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // What every process that runs turns is made of (`Runtime`) and the channels' senders: `serve` and `work` alike.
        .target(
            name: "FlowRuntime",
            dependencies: [
                "FlowVM", "Connectors", "FlowEngine", "FlowStore",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .target(
            name: "Server",
            dependencies: [
                "FlowVM", "FlowCompiler", "FlowEngine", "FlowStore", "FlowRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            resources: [.copy("openapi.json"), .copy("Studio")]
        ),
        .executableTarget(
            name: "flowline",
            dependencies: [
                "FlowVM", "FlowCompiler", "Connectors", "FlowEngine", "FlowStore", "FlowRuntime", "Server", "CRMConnector",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                // For `flowline bench`: a load generator, a callback receiver and the PostgreSQL ceiling.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // What several test targets share (a closed port, …); only tests depend on it.
        // Fakes of the providers that have no real peer (the Graph API, Stripe's API, n8n), written from their
        // documented contracts and as strict as they are.
        .target(
            name: "FlowlineTestKit",
            dependencies: [
                "FlowStore", "FlowVM", "FlowCompiler", "Connectors",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/FlowlineTestKit"
        ),
        .testTarget(name: "FlowVMTests", dependencies: ["FlowVM", "FlowCompiler", "Connectors"]),
        .testTarget(
            name: "FlowCompilerTests",
            dependencies: ["FlowCompiler", "FlowVM", "Connectors", "FlowRuntime"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "FlowEngineTests",
            dependencies: [
                "FlowlineTestKit",
                "FlowEngine", "FlowStore", "FlowVM", "FlowCompiler", "Connectors",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The SQL store on both databases, through the protocols the API is written against.
        .testTarget(
            name: "FlowStoreTests",
            dependencies: ["FlowlineTestKit", "FlowStore", "FlowEngine", "FlowVM", "FlowCompiler", "Connectors"]
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "FlowlineTestKit",
                "Server", "FlowRuntime", "FlowEngine", "FlowStore", "FlowVM",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "ConnectorsTests",
            dependencies: [
                "FlowlineTestKit",
                "Connectors", "FlowCompiler", "FlowVM", "FlowEngine", "FlowRuntime",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "CRMConnectorTests",
            dependencies: [
                "FlowlineTestKit",
                "CRMConnector", "FlowEngine", "FlowStore", "FlowVM", "FlowCompiler", "Connectors", "FlowRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
