// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "secureops",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SecureOpsJSON", targets: ["SecureOpsJSON"]),
        .library(name: "SecureOpsWire", targets: ["SecureOpsWire"]),
        .library(name: "SecureOpsEngine", targets: ["SecureOpsEngine"]),
        .library(name: "SecureOpsClient", targets: ["SecureOpsClient"]),
        .library(name: "SecureOpsEngineService", targets: ["SecureOpsEngineService"]),
        .library(name: "SecureOpsForwarder", targets: ["SecureOpsForwarder"]),
        .executable(name: "secureopsd", targets: ["secureopsd"]),
        .executable(name: "secureops", targets: ["secureops"]),
        .executable(name: "secureops-bench", targets: ["secureops-bench"]),
    ],
    // What a client or an embedder resolves: with the default traits off
    // (`.package(url: ..., from: ..., traits: [])`) only swift-log; the
    // daemon's, the tools' and the Service adapter's dependencies are
    // each behind a trait, enabled by default.
    traits: [
        .trait(name: "Tools", description: "secureopsd, secureops and secureops-bench, and the audit log library: swift-argument-parser, swift-crypto, hdrhistogram-swift"),
        .trait(name: "Service", description: "SecureOpsEngineService, the engine as a swift-service-lifecycle Service"),
        .default(enabledTraits: ["Tools", "Service"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Linux interfaces Glibc does not import (O_PATH, SO_PEERCRED,
        // pidfd_open); links nothing, so clients may use it.
        .target(name: "CSecureOpsSystem"),
        // System interfaces the safe way: paths walked and checked one
        // component at a time on descriptors, directories held open, peer
        // credentials from the kernel.
        .target(name: "SecureOpsSystem", dependencies: ["CSecureOpsSystem"]),
        // JSON values, the Codable decoder over raw bytes, the frame writer.
        .target(name: "SecureOpsJSON"),
        // The SecureOps wire contract (docs/WIRE.md): request, response and
        // alert types, the newline framing, the defaults clients share.
        .target(name: "SecureOpsWire", dependencies: ["SecureOpsJSON"]),
        // The C surface of liburing (Debian: liburing-dev).
        .target(
            name: "CURing",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        // The journal: a broadcast stream's records on disk, checksummed,
        // in segments; recovery, retention, a writer thread, readers.
        .target(name: "SecureOpsJournal", dependencies: ["SecureOpsSystem", "CSecureOpsSystem"]),
        // The C surface of the NATS C client (Debian: libnats-dev).
        .target(
            name: "CNATS",
            linkerSettings: [.linkedLibrary("nats")]
        ),
        // Alerts forwarded to a NATS JetStream stream, and read back from it.
        // Not the engine's, not the client's: only what embeds it links
        // libnats.
        .target(
            name: "SecureOpsForwarder",
            dependencies: [
                "CNATS",
                "SecureOpsSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The event-loop engine: ring, loop, broadcast, listener. Generic:
        // any newline-delimited JSON protocol (it re-exports JSON and wire).
        .target(
            name: "SecureOpsEngine",
            dependencies: [
                "CURing",
                "SecureOpsJSON",
                "SecureOpsWire",
                "SecureOpsSystem",
                "SecureOpsJournal",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The engine as a swift-service-lifecycle Service. Its own target so
        // the engine, the daemon and the CLI do not compile ServiceLifecycle
        // and its dependencies (swift-async-algorithms, swift-collections).
        .target(
            name: "SecureOpsEngineService",
            dependencies: [
                "SecureOpsEngine",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["Service"])),
            ]
        ),
        // The client side of the wire contract: blocking core and async API.
        // JSON and wire only (and the system layer for SO_PEERCRED): no
        // engine, no liburing.
        .target(
            name: "SecureOpsClient",
            dependencies: ["SecureOpsJSON", "SecureOpsWire", "SecureOpsSystem"]
        ),
        // The signed, hash-chained audit log: written by the daemon,
        // verified by `secureops verify-log`.
        .target(
            name: "SecureOpsAuditLog",
            dependencies: [
                "SecureOpsJSON",
                "SecureOpsSystem",
                .product(name: "Crypto", package: "swift-crypto", condition: .when(traits: ["Tools"])),
            ]
        ),
        // Everything the daemon does beyond the engine: handlers, policy,
        // audit, kill switch. A library so tests can reach its parts.
        .target(
            name: "SecureOpsDaemon",
            dependencies: [
                "CURing",
                "SecureOpsSystem",
                "SecureOpsEngine",
                "SecureOpsAuditLog",
                "SecureOpsForwarder",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "secureopsd",
            dependencies: [
                "SecureOpsDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: .when(traits: ["Tools"])),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "secureops",
            dependencies: [
                "SecureOpsClient",
                "SecureOpsAuditLog",
                "SecureOpsSystem",
                // `secureops tail --nats`: the CLI links libnats, the client library does not.
                "SecureOpsForwarder",
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: .when(traits: ["Tools"])),
            ]
        ),
        .executableTarget(
            name: "secureops-bench",
            dependencies: [
                "SecureOpsClient",
                "SecureOpsEngine",
                "SecureOpsSystem",
                "CURing",
                .product(name: "Histogram", package: "hdrhistogram-swift", condition: .when(traits: ["Tools"])),
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: .when(traits: ["Tools"])),
            ]
        ),
        // What every test target shares: TestFailure, the one polling
        // helper, running a process with a time limit, scratch directories.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "SecureOpsEngineTests",
            // Logging: the fake server builds its EventLoop with a quiet logger.
            dependencies: ["SecureOpsEngine", "SecureOpsWire", "SecureOpsSystem", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        // In-process engines with handlers of their own (the embedding API).
        .testTarget(
            name: "EmbeddingTests",
            dependencies: [
                "SecureOpsEngine",
                "SecureOpsSystem",
                "SecureOpsEngineService",
                "SecureOpsClient",
                "TestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: .when(traits: ["Service"])),
            ]
        ),
        .testTarget(
            name: "JournalTests",
            dependencies: ["SecureOpsJournal", "SecureOpsSystem", "CSecureOpsSystem", "TestSupport"]
        ),
        .testTarget(
            name: "JSONTests",
            dependencies: ["SecureOpsJSON", "SecureOpsWire"],
            exclude: ["Resources"]
        ),
        // Against real nats-server processes (Debian: nats-server).
        .testTarget(
            name: "ForwarderTests",
            dependencies: ["SecureOpsForwarder", "SecureOpsSystem", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "SecureOpsDaemonTests",
            dependencies: ["SecureOpsDaemon", "SecureOpsSystem", "SecureOpsClient", "SecureOpsForwarder", "TestSupport", "secureopsd", "secureops", "secureops-bench"],
            exclude: ["Fixtures"]
        ),
    ]
)
