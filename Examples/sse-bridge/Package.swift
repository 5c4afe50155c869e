// swift-tools-version: 6.1
// An HTTP bridge that shows secureopsd's alert stream to browsers as
// Server-Sent Events, with a one-page live viewer. See README.md.
import PackageDescription

let package = Package(
    name: "sse-bridge",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "secureops", path: "../.."),
        // No default traits: the bridge needs neither swift-configuration
        // nor full Foundation, and skipping them shortens the build.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .executableTarget(
            name: "sse-bridge",
            dependencies: [
                .product(name: "SecureOpsClient", package: "secureops"),
                .product(name: "SecureOpsEngine", package: "secureops"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
