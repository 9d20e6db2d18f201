// swift-tools-version: 6.1
// Codec micro benchmarks (issue #13), kept out of the main package so its build and CI never pay for them.
//
// Run from this directory: `swift package benchmark` (needs the ordo-one/benchmark plugin, resolved from the
// local mirror). The main package exports only the `ganymede` executable, so the JupyterProtocol sources are
// compiled here through a symlink (Sources/JupyterProtocol -> ../../../Sources/JupyterProtocol): the code
// measured is exactly the gateway's codec code. With a `.library(name: "JupyterProtocol", ...)` product in the
// main package this could become `.package(path: "../..")`.
import PackageDescription

let package = Package(
    name: "GanymedeCodecBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
    ],
    targets: [
        .target(
            name: "JupyterProtocol",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/JupyterProtocol"
        ),
        .executableTarget(
            name: "CodecBenchmarks",
            dependencies: [
                "JupyterProtocol",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/CodecBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
