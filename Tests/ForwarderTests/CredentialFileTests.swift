import Foundation
import Glibc
import Testing
import TestSupport
@testable import SecureOpsForwarder

/// The files the forwarder authenticates with, as an attacker on the same
/// host would attack them: another owner, a symbolic link, a secret others
/// can read, a file swapped after the check.
@Suite("Forwarder credential files")
struct CredentialFileTests {
    private func refusal(_ path: String, kind: CredentialFile.Kind = .secret) -> String? {
        do {
            _ = try CredentialFile.open(path, kind: kind, what: "token file")
            return nil
        } catch {
            #expect(error.needsOperator)
            return error.description
        }
    }

    @Test func aSecretOthersCanReadIsRefusedAndTheErrorSaysHowToFixIt() throws {
        let scratch = try ScratchDirectory(prefix: "so-creds")
        let path = scratch.path + "/token"
        try writeSecret("s3cret\n", to: path)
        #expect(refusal(path) == nil)
        chmod(path, 0o644)
        let why = try #require(refusal(path))
        #expect(why.contains("readable by others") && why.contains("chmod o-rwx"), "\(why)")
        #expect(refusal(path, kind: .certificate) == nil, "a CA or certificate may be world-readable")
    }

    @Test func aFileAnotherUserOwnsOrCanWriteIsRefused() throws {
        let scratch = try ScratchDirectory(prefix: "so-creds")
        let path = scratch.path + "/token"
        try writeSecret("s3cret\n", to: path)
        try #require(chown(path, 65534, 65534) == 0, "chown needs root")
        #expect(refusal(path)?.contains("owned by") == true, "\(refusal(path) ?? "accepted")")
        chown(path, 0, 0)
        chmod(path, 0o620)
        #expect(refusal(path)?.contains("writable") == true, "\(refusal(path) ?? "accepted")")
    }

    @Test func aFileReachedThroughASymbolicLinkIsRefused() throws {
        let scratch = try ScratchDirectory(prefix: "so-creds")
        try writeSecret("s3cret\n", to: scratch.path + "/real")
        symlink(scratch.path + "/real", scratch.path + "/token")
        #expect(refusal(scratch.path + "/token")?.contains("symbolic link") == true, "\(refusal(scratch.path + "/token") ?? "accepted")")
    }

    /// libnats reads a `.creds` file again at every reconnect: it gets the
    /// checked descriptor, so a file renamed over the path later is never
    /// what it reads.
    @Test func whatIsReadIsTheCheckedFileEvenAfterThePathIsReplaced() throws {
        let scratch = try ScratchDirectory(prefix: "so-creds")
        let path = scratch.path + "/user.creds"
        try writeSecret("checked", to: path)
        let file = try CredentialFile.open(path, kind: .secret, what: "credentials file")
        try writeSecret("swapped", to: scratch.path + "/other")
        #expect(rename(scratch.path + "/other", path) == 0)
        #expect(try String(contentsOfFile: file.procPath, encoding: .utf8) == "checked")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "swapped")
    }

    /// Through the forwarder: one clear reason, and the failed state.
    @Test func aForwarderWithARefusedFileFailsWithTheReason() async throws {
        let scratch = try ScratchDirectory(prefix: "so-creds")
        let server = try NATSServer(in: scratch, extra: ["--auth", "t0ken"])
        try server.start()
        let tokenFile = scratch.path + "/token"
        try writeSecret("t0ken\n", to: tokenFile)
        chmod(tokenFile, 0o604)
        var configuration = ForwarderConfiguration(servers: [server.url])
        configuration.connection.tokenFile = tokenFile
        let source = MemorySource()
        let forwarder = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }
        forwarder.notify(lastSequence: source.append(3))
        #expect(await eventually(within: 20) { forwarder.status.state == .failed }, "\(forwarder.status)")
        #expect(forwarder.status.lastError?.contains("readable by others") == true, "\(forwarder.status)")

        // Fixed as the error says: the token is read and accepted.
        chmod(tokenFile, 0o600)
        let fixedDirectory = scratch.path + "/fixed"
        try FileManager.default.createDirectory(atPath: fixedDirectory, withIntermediateDirectories: true)
        let fixed = try makeForwarder(configuration, source: source, cursorDirectory: fixedDirectory)
        try fixed.start()
        defer { fixed.stop() }
        fixed.notify(lastSequence: 3)
        #expect(await eventually(within: 20) { fixed.status.acknowledgedSequence == 3 }, "\(fixed.status)")
    }
}
