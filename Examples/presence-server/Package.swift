// swift-tools-version: 6.1
// A presence server with its own protocol, built on SecureOpsEngine: clients
// set their status, watchers subscribe to every change. See README.md.
import PackageDescription

let package = Package(
    name: "presence-server",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The engine, from this repository (named, so the identity does not
        // depend on the checkout folder's name).
        .package(name: "secureops", path: "../.."),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "presence-server",
            dependencies: [
                .product(name: "SecureOpsEngine", package: "secureops"),
                .product(name: "SecureOpsEngineService", package: "secureops"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
