import Foundation
import Glibc
import SecureOpsClient
import Testing

/// `Examples/presence-server`: a server with a protocol of its own, built on
/// the engine's public API as its own package. Built here with `swift build`
/// (its first build compiles the engine and ServiceLifecycle: about 40 s on
/// a 2-core machine; later runs reuse `Examples/presence-server/.build`),
/// started, and talked to over its socket.
@Suite("Example: presence server", .serialized, .timeLimit(.minutes(15)))
struct ExampleServerTests {
    @Test func thePresenceServerServesItsProtocolAndStopsGracefullyOnSIGTERM() async throws {
        let binary = try await PresenceServerBuild.binary()
        let scratch = try ScratchDirectory(prefix: "so-example")
        let directory = scratch.path
        let socket = directory + "/presence.sock"
        let snapshot = directory + "/snapshot.json"
        let server = try Process.start(binary, ["--socket", socket, "--snapshot", snapshot], log: directory + "/server.log")
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        try waitUntilConnectable(socket, process: server, log: directory + "/server.log")

        let watcher = try SecureOpsConnection.connect(to: socket)
        try watcher.sendRaw(Array("{\"type\":\"watch\"}\n".utf8))
        let watching = try line(watcher)
        #expect(watching.hasPrefix(#"{"type":"ok","next":1,"epoch":""#), "\(watching)")

        let client = try SecureOpsConnection.connect(to: socket)
        try client.sendRaw(Array("""
            {"type":"set","name":"alice","status":"online","note":"at desk"}
            {"type":"set","name":"bob","status":"away"}
            {"type":"get","name":"alice"}
            {"type":"list"}
            {"type":"get","name":"carol"}
            {"type":"set","name":"x","status":"sleepy"}
            {"type":"save"}

            """.utf8))
        let replies = try (0..<7).map { _ in try line(client) }
        #expect(replies[0] == #"{"type":"ok","sequence":1}"#)
        #expect(replies[1] == #"{"type":"ok","sequence":2}"#)
        #expect(replies[2].hasPrefix(#"{"type":"ok","sequence":1,"time":""#) && replies[2].hasSuffix(#""name":"alice","status":"online","note":"at desk"}"#), "\(replies[2])")
        #expect(replies[3].contains(#""name":"alice","status":"online""#) && replies[3].contains(#""name":"bob","status":"away","note":null}]}"#), "\(replies[3])")
        #expect(replies[4] == #"{"type":"err","message":"nobody called \"carol\" has set a status"}"#)
        #expect(replies[5].hasPrefix(#"{"type":"err","message":"status: "#), "\(replies[5])")
        #expect(replies[6] == #"{"type":"ok","saved":2,"path":"\#(snapshot)"}"#)
        let saved = try String(contentsOfFile: snapshot, encoding: .utf8)
        #expect(saved.hasPrefix(#"[{"sequence":1,"#) && saved.contains(#""name":"bob""#))

        // The watcher got both changes, in order.
        let changes = try (0..<2).map { _ in try line(watcher) }
        #expect(changes[0].hasPrefix(#"{"type":"presence","sequence":1,"#) && changes[0].contains(#""name":"alice","status":"online""#))
        #expect(changes[1].hasPrefix(#"{"type":"presence","sequence":2,"#) && changes[1].contains(#""name":"bob","status":"away""#))

        // SIGTERM reaches the engine through the ServiceGroup: a graceful
        // stop, exit 0, the socket file removed, connections closed.
        // The ServiceGroup takes SIGTERM over only once it runs, a moment
        // after the engine serves: before that it would end the process.
        #expect(await eventually { catchesSignal(server.processIdentifier, SIGTERM) })
        kill(server.processIdentifier, SIGTERM)
        #expect(try waitForExit(server, what: "presence-server") == 0)
        #expect(!FileManager.default.fileExists(atPath: socket))
        #expect(try watcher.readFrame(timeout: 5) == nil)
        let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
        #expect(log.contains("presence-server stopped"), "\(log)")
    }

    /// Where io_uring is denied (a container's seccomp profile), the
    /// example, which leaves `EngineConfiguration.ioBackend` at `auto`,
    /// serves on epoll and its log says why once.
    @Test func withoutIoUringTheExampleServesOnEpollAndSaysWhy() async throws {
        let binary = try await PresenceServerBuild.binary()
        let helper = try compileFixture("deny-io-uring")
        let scratch = try ScratchDirectory(prefix: "so-example")
        let directory = scratch.path
        let socket = directory + "/p.sock"
        let logPath = directory + "/server.log"
        let server = try Process.start(helper, ["1", binary, "--socket", socket, "--snapshot", directory + "/snapshot.json"], log: logPath)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        try waitUntilConnectable(socket, process: server, log: logPath)

        let client = try SecureOpsConnection.connect(to: socket)
        try client.sendRaw(Array("{\"type\":\"set\",\"name\":\"alice\",\"status\":\"online\"}\n".utf8))
        #expect(try line(client) == #"{"type":"ok","sequence":1}"#)
        // The ServiceGroup takes SIGTERM over only once it runs, a moment
        // after the engine serves: before that it would end the process.
        #expect(await eventually { catchesSignal(server.processIdentifier, SIGTERM) })
        kill(server.processIdentifier, SIGTERM)
        #expect(try waitForExit(server, what: "presence-server") == 0)
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("serving on epoll instead") && log.contains("seccomp"), "\(log)")
    }

    private func line(_ connection: SecureOpsConnection) throws -> String {
        guard let frame = try connection.readFrame(timeout: 10) else { throw TestFailure("the presence server closed the connection") }
        return String(decoding: frame, as: UTF8.self)
    }
}

/// Builds the example package once per test run.
enum PresenceServerBuild {
    private static let result: Result<String, TestFailure> = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let package = root + "/Examples/presence-server"
        let started = Date()
        do {
            let (status, output) = try run(SwiftToolchain.swiftExecutable(), ["build", "--package-path", package], timeout: 900)
            guard status == 0 else { return .failure(TestFailure("swift build --package-path \(package) failed:\n\(output)")) }
            let seconds = Date().timeIntervalSince(started)
            print("built Examples/presence-server in \(String(format: "%.1f", seconds)) s")
            return .success(package + "/.build/debug/presence-server")
        } catch {
            return .failure(TestFailure("could not run swift build: \(error)"))
        }
    }()

    /// The first call builds (a minute from a fresh clone) on a thread of
    /// its own; see `onOwnThread`.
    static func binary() async throws -> String {
        try await onOwnThread { try result.get() }
    }
}

enum SwiftToolchain {
    /// `swift` from PATH, else the toolchain's usual place here.
    static func swiftExecutable() -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/swift") {
            return "\(directory)/swift"
        }
        return "/opt/swift/usr/bin/swift"
    }
}

private func waitUntilConnectable(_ socket: String, process: Process, log: String) throws {
    var exited = false
    let listening = eventually(within: 20) {
        exited = !process.isRunning
        guard !exited, let connection = try? SecureOpsConnection.connect(to: socket) else { return exited }
        connection.close()
        return true
    }
    if exited {
        throw TestFailure("presence-server exited with \(process.terminationStatus):\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }
    guard listening else { throw TestFailure("presence-server did not listen on \(socket) within 20 s") }
}

extension Process {
    /// Starts `executable` with stdout and stderr appended to `log`.
    static func start(_ executable: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }
}

/// Whether `pid` has a handler installed for `signal` (its SigCgt mask in
/// /proc/PID/status).
func catchesSignal(_ pid: Int32, _ signal: Int32) -> Bool {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
          let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16)
    else { return false }
    return mask & (1 << UInt64(signal - 1)) != 0
}
