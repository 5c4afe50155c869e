// swift-tools-version: 6.1
// Benchmarks for the JSON fast path of SecureOpsEngine (decoder and frame
// writer), with Foundation's JSONDecoder on the same types for comparison.
// See README.md for the commands and the numbers.
import PackageDescription

let package = Package(
    name: "secureops-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named, so the identity does not depend on the checkout folder name.
        .package(name: "secureops", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The frames every benchmark uses (deterministic, seeded).
        .target(
            name: "BenchmarkFrames",
            dependencies: [.product(name: "SecureOpsEngine", package: "secureops")]
        ),
        // package-benchmark suite: ns, mallocs and throughput per frame, with
        // thresholds in Thresholds/.
        .executableTarget(
            name: "JSONBenchmarks",
            dependencies: [
                "BenchmarkFrames",
                .product(name: "SecureOpsEngine", package: "secureops"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/JSONBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The line splitter (LineFramer): ns and mallocs per 1,000 frames.
        .executableTarget(
            name: "FramingBenchmarks",
            dependencies: [
                "BenchmarkFrames",
                .product(name: "SecureOpsEngine", package: "secureops"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/FramingBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The broadcast ring and the gathered-send (iovec) building: ns and
        // mallocs per 1,000 appends / sends, through @_spi(Benchmarks).
        .executableTarget(
            name: "BroadcastBenchmarks",
            dependencies: [
                .product(name: "SecureOpsEngine", package: "secureops"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/BroadcastBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // A plain timing loop (quick to build; prints ns/frame and ratios).
        .executableTarget(
            name: "json-timing",
            dependencies: [
                "BenchmarkFrames",
                .product(name: "SecureOpsEngine", package: "secureops"),
            ]
        ),
    ]
)
