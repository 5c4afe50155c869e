import Foundation
import Testing

/// What depending on one product of this package costs a consumer.
@Suite("Package graph", .timeLimit(.minutes(5)))
struct PackageGraphTests {
    /// A package that depends on SecureOpsClient with the default traits
    /// off resolves swift-log alone (not swift-crypto, argument-parser,
    /// service-lifecycle or hdrhistogram), builds, and does not link
    /// liburing.
    @Test func aClientOnlyConsumerResolvesSwiftLogAloneAndDoesNotLinkLiburing() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        var template = Array("/tmp/so-consumer-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed") }
        let consumer = String(cString: template)
        defer { try? FileManager.default.removeItem(atPath: consumer) }
        try FileManager.default.createDirectory(atPath: consumer + "/Sources/consumer", withIntermediateDirectories: true)
        try """
            // swift-tools-version: 6.1
            import PackageDescription
            let package = Package(
                name: "consumer",
                dependencies: [.package(path: "\(root)", traits: [])],
                targets: [.executableTarget(name: "consumer", dependencies: [.product(name: "SecureOpsClient", package: "\(URL(fileURLWithPath: root).lastPathComponent)")])]
            )
            """.write(toFile: consumer + "/Package.swift", atomically: true, encoding: .utf8)
        try """
            import SecureOpsClient
            print(WireDefaults.socketPath())
            """.write(toFile: consumer + "/Sources/consumer/main.swift", atomically: true, encoding: .utf8)

        let swift = SwiftToolchain.swiftExecutable()
        let (resolved, resolveOutput) = try await onOwnThread { try run(swift, ["package", "resolve", "--package-path", consumer], timeout: 300) }
        #expect(resolved == 0, "\(resolveOutput)")
        let pins = try String(contentsOfFile: consumer + "/Package.resolved", encoding: .utf8)
            .split(separator: "\n").filter { $0.contains("\"identity\"") }
            .map { $0.split(separator: "\"")[3] }
        #expect(pins == ["swift-log"], "a client-only consumer resolved \(pins)")

        let (built, buildOutput) = try await onOwnThread { try run(swift, ["build", "--package-path", consumer], timeout: 600) }
        #expect(built == 0, "\(buildOutput)")
        let (_, libraries) = try run("/usr/bin/ldd", [consumer + "/.build/debug/consumer"])
        #expect(libraries.contains("libc.so") && !libraries.contains("liburing"), "\(libraries)")
    }
}
