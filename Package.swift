// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Flowline",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "flowline", targets: ["flowline"]),
        .library(name: "FlowVM", targets: ["FlowVM"]),
        .library(name: "FlowCompiler", targets: ["FlowCompiler"]),
        .library(name: "Connectors", targets: ["Connectors"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
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
        .target(name: "Connectors", dependencies: ["FlowVM"]),
        .target(name: "Server", dependencies: ["FlowVM", "FlowCompiler", "Connectors"]),
        .executableTarget(
            name: "flowline",
            dependencies: [
                "FlowVM", "FlowCompiler", "Connectors",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "FlowVMTests", dependencies: ["FlowVM", "FlowCompiler", "Connectors"]),
        .testTarget(
            name: "FlowCompilerTests",
            dependencies: ["FlowCompiler", "FlowVM", "Connectors"],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "ConnectorsTests", dependencies: ["Connectors", "FlowCompiler", "FlowVM"]),
    ],
    swiftLanguageModes: [.v6]
)
