import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The client side of the socket: the CLI and the client library check
/// who serves it (SO_PEERCRED) before sending anything, so a user
/// squatting the default path cannot take the caller's `kill`.
@Suite("Server trust", .timeLimit(.minutes(2)))
struct ServerTrustTests {
    /// A squatter: uid 65534 makes a directory in the shared /tmp and
    /// serves a socket in it that answers "ok" to everything.
    final class Squatter {
        let directory: String
        let socket: String
        private let process = Process()
        private let input = Pipe()

        init() throws {
            directory = "/tmp/secureops-squat-\(UUID().uuidString.prefix(8))"
            let (made, mkdirOutput) = try run("/usr/bin/setpriv", SecondUser.setpriv() + ["/bin/mkdir", "-m", "0755", directory])
            guard made == 0 else { throw TestFailure("mkdir as 65534: \(mkdirOutput)") }
            socket = directory + "/secureopsd.sock"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = SecondUser.setpriv() + [try compileFixture("fake-server"), socket, #"{"type":"ok","killed":true,"sequence":1}"#]
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            guard String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("LISTENING") else {
                throw TestFailure("the fake server did not start")
            }
        }

        deinit {
            try? input.fileHandleForWriting.close()
            killAndWait(process)
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test func theCLIRefusesASquattersSocketAndSendsItNothing() throws {
        let squatter = try Squatter()
        let (status, output) = try run(DaemonProcess.cliPath, ["kill", "--reason", "stop the agent", "--socket", squatter.socket])
        #expect(status != 0)
        #expect(!output.contains("kill switch tripped"), "got \(output)")
        #expect(output.contains("refusing to talk to \(squatter.socket): it is served by uid 65534, which is neither root, you (uid 0), nor the owner of a private socket directory only root could have made; if uid 65534 runs your secureopsd, pass --server-uid 65534 or set SECUREOPS_SERVER_UID=65534"), "got \(output)")
    }

    @Test func namingTheServersUidAcceptsItAndOnlyIt() throws {
        let squatter = try Squatter()
        let (status, output) = try run(DaemonProcess.cliPath, ["kill", "--socket", squatter.socket, "--server-uid", "65534"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("kill switch tripped; alert sequence 1"))
        var environment = ProcessInfo.processInfo.environment
        environment["SECUREOPS_SERVER_UID"] = "65534"
        let (viaEnvironment, _) = try run(DaemonProcess.cliPath, ["ping", "--socket", squatter.socket], environment: environment)
        #expect(viaEnvironment == 0)
        // Naming a uid means only that one: root's own daemon is refused then.
        let daemon = try DaemonProcess()
        let (refused, refusal) = try run(DaemonProcess.cliPath, ["ping", "--socket", daemon.socketPath, "--server-uid", "65534"])
        #expect(refused != 0)
        #expect(refusal.contains("it is served by uid 0, not the expected uid 65534"), "got \(refusal)")
    }

    @Test func theAsyncClientRefusesASquatterToo() async throws {
        let squatter = try Squatter()
        do {
            let client = try await SecureOpsAsyncClient.connect(to: squatter.socket)
            _ = try await client.kill(reason: "should never be sent")
            Issue.record("the async client talked to the squatter")
        } catch let error as IpcError {
            guard case .untrustedServer(let message) = error else {
                Issue.record("expected untrustedServer, got \(error)")
                return
            }
            #expect(message.contains("served by uid 65534"))
        }
        var configuration = SecureOpsAsyncClient.Configuration()
        configuration.serverTrust = ServerTrust(expectedUID: 65534)
        let trusting = try await SecureOpsAsyncClient.connect(to: squatter.socket, configuration: configuration)
        try await trusting.ping()
    }

    /// A daemon run as a dedicated user, in a private directory that root
    /// made for it (like systemd's RuntimeDirectory=): trusted by default.
    @Test func aDedicatedUsersDaemonInADirectoryRootMadeIsTrusted() throws {
        let directory = try makeTemporaryDirectory("secureops-dedicated")
        chmod(directory, 0o755)
        mkdir(directory + "/run", 0o750)
        chown(directory + "/run", 65534, 65534)
        mkdir(directory + "/state", 0o700)
        chown(directory + "/state", 65534, 65534)
        let daemon = try DaemonProcess(directory: directory, launcher: ["/usr/bin/setpriv"] + SecondUser.setpriv())
        let (status, output) = try run(DaemonProcess.cliPath, ["ping", "--socket", daemon.socketPath])
        #expect(status == 0, "\(output)")
    }
}
