// swift-tools-version: 6.1
import PackageDescription

// Micro-benchmarks of the compiler and the VM (ordo-one/benchmark): `swift package benchmark` in this folder.
// The end-to-end figures (durable turns, HTTP, timers, memory) come from `flowline bench`; see BENCHMARKS.md.
let package = Package(
    name: "FlowlineBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Flowline", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .executableTarget(
            name: "FlowlineBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "FlowCompiler", package: "Flowline"),
                .product(name: "FlowVM", package: "Flowline"),
                .product(name: "Connectors", package: "Flowline"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Benchmarks/FlowlineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
