import Foundation
import Testing
import SecureOpsClient
import SecureOpsDaemon
import SecureOpsEngine

/// Peer authorization from SO_PEERCRED with a real second uid (65534,
/// "nobody"), switched to with setpriv.
@Suite("Authorization", .timeLimit(.minutes(2)))
struct AuthorizationTests {
    static let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]

    /// Runs the CLI as uid 65534.
    func runAsNobody(_ arguments: [String]) throws -> (Int32, String) {
        try run("/usr/bin/setpriv", Self.nobody + [DaemonProcess.cliPath] + arguments)
    }

    @Test func withoutAPolicyAnotherUserIsRefusedWithOneErrorAndClosed() throws {
        let daemon = try DaemonProcess(socketMode: "0666", reachableByOtherUsers: true)
        let (status, output) = try runAsNobody(["ping", "--socket", daemon.socketPath, "--json"])
        #expect(status != 0)
        #expect(output.contains(#"{"type":"err","message":"not authorized: uid 65534 may not use this socket"#), "got \(output)")
        let stats = try daemon.connect().status()
        #expect(stats.connectionsRefused == 1)
    }

    @Test func rootAndTheDaemonsOwnUserMayDoEverything() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        try connection.ping()
        #expect(try connection.reloadPolicy() == 1)
        #expect(try connection.audit().checks.isEmpty == false)
    }

    @Test func peerCredIsAuthorizedOnlyForRootAndTheDaemonUID() {
        #expect(PeerCred(pid: 1, uid: 0, gid: 0).isPrivileged(daemonUID: 1000))
        #expect(PeerCred(pid: 1, uid: 1000, gid: 1000).isPrivileged(daemonUID: 1000))
        #expect(!PeerCred(pid: 1, uid: 65534, gid: 65534).isPrivileged(daemonUID: 1000))
    }
}
