import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Starting, stopping and refusing to start: signals, stale sockets, a
/// second daemon, io_uring unavailable, bad policy files.
@Suite("Daemon lifecycle", .timeLimit(.minutes(2)))
struct LifecycleTests {
    @Test func sigtermAnswersRequestsInFlightThenExitsZeroAndRemovesTheSocket() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        // Offloaded audits keep the daemon busy while SIGTERM arrives.
        var frames = ""
        for index in 0..<30 { frames += index % 3 == 0 ? "{\"type\":\"audit\",\"deep\":true}\n" : "{\"type\":\"ping\"}\n" }
        try client.write(frames)
        kill(daemon.pid, SIGTERM)
        let lines = client.readLines(30, timeout: 15)
        #expect(lines.count == 30, "got \(lines.count) replies")
        #expect(client.isClosedByPeer())
        #expect(try daemon.waitForExit() == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
    }

    @Test func sigintAlsoShutsDownCleanly() throws {
        let daemon = try DaemonProcess()
        #expect(try daemon.stop(signal: SIGINT) == 0)
        #expect(daemon.log.contains("secureopsd stopped"))
    }

    @Test func subscribersReceiveQueuedAlertsBeforeShutdownClosesThem() throws {
        let daemon = try DaemonProcess()
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let publisher = try daemon.connect()
        for index in 0..<200 {
            try publisher.send(.publish(AlertInput(severity: .info, source: "s", message: "\(index)")))
        }
        for _ in 0..<200 { _ = try publisher.reply() }
        try daemon.stop()
        var count = 0
        while case .alert? = try subscriber.nextPush(timeout: 5) { count += 1 }
        #expect(count == 200)
    }

    @Test func aStaleSocketFileIsReplaced() throws {
        let daemon = try DaemonProcess()
        try daemon.stop(signal: SIGKILL)
        #expect(FileManager.default.fileExists(atPath: daemon.socketPath), "SIGKILL leaves the socket file")
        try daemon.restart()
        try daemon.connect().ping()
        #expect(daemon.log.contains("replacing stale socket file"))
    }

    @Test func aSecondDaemonOnALiveSocketIsRefused() throws {
        let first = try DaemonProcess()
        let second = try DaemonProcess(directory: nil, waitUntilServing: false)
        _ = second // only its scratch directory is used
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DaemonProcess.daemonPath)
        process.arguments = ["--socket", first.socketPath, "--state-dir", second.stateDirectory]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(output.contains("another server is already answering on \(first.socketPath)"), "got \(output)")
        try first.connect().ping()
    }

    @Test func aSocketPathTooLongForSunPathIsRefusedWithItsLength() throws {
        let path = "/tmp/" + String(repeating: "x", count: 120) + ".sock"
        let (status, output) = try runDaemon(["--socket", path, "--state-dir", "/tmp/secureops-test-unused-state"])
        #expect(status != 0)
        #expect(output.contains("more than the 107 a Unix socket address holds"), "got \(output)")
    }

    @Test func aMissingPolicyFileStopsStartupWithAClearMessage() throws {
        let (status, output) = try runDaemon(["--socket", "/tmp/secureops-test-missing-policy.sock", "--state-dir", "/tmp/secureops-test-unused-state", "--policy", "/nonexistent/policy.json"])
        #expect(status != 0)
        #expect(output.contains("policy /nonexistent/policy.json: /nonexistent does not exist"), "got \(output)")
    }

    @Test func aCorruptPolicyFileStopsStartupNamingTheProblem() throws {
        let directory = NSTemporaryDirectory() + "secureops-corrupt-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let policy = directory + "/policy.json"
        try #"{"version": 2, "grants": [{"uid": 65534, "allow": ["ping", "reboot"]}]}"#.write(toFile: policy, atomically: true, encoding: .utf8)
        let (status, output) = try runDaemon(["--socket", directory + "/s.sock", "--state-dir", directory + "/state", "--policy", policy])
        #expect(status != 0)
        #expect(output.contains(#"unknown verb "reboot""#), "got \(output)")
    }

    /// Default containers and hardened hosts deny io_uring_setup (EPERM
    /// from a seccomp profile, ENOSYS from a kernel built without it): the
    /// daemon serves on epoll, reports it in `status`, and its log says once
    /// why io_uring was not used and how to enable it.
    @Test(arguments: [("1", "EPERM", "seccomp"), ("38", "ENOSYS", "built without io_uring")])
    func withIoUringDeniedTheDaemonServesOnEpollAndSaysWhy(errno: String, name: String, hint: String) throws {
        let helper = try compileFixture("deny-io-uring")
        let daemon = try DaemonProcess(extraArguments: ["--io-backend", "auto"], launcher: [helper, errno])
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let publisher = try daemon.connect()
        #expect(try publisher.status().ioBackend == "epoll")
        let sequence = try publisher.publish(AlertInput(severity: .info, source: "probe", message: "served on epoll"))
        guard case .alert(let alert)? = try subscriber.nextPush(timeout: 10) else {
            throw TestFailure("the subscriber got no alert on epoll:\n\(daemon.log)")
        }
        #expect(alert.sequence == sequence && alert.message == "served on epoll")
        let audit = try #require(try publisher.audit().checks.first { $0.id == "io-backend" })
        #expect(audit.status == .warn && audit.detail.contains("io_uring was not available") && audit.detail.contains(name), "got \(audit.detail)")
        let log = daemon.log
        #expect(log.contains("io_uring is not available, serving on epoll instead"), "got \(log)")
        #expect(log.contains(name) && log.contains(hint), "got \(log)")
        #expect(try daemon.stop() == 0)
    }

    /// `--io-backend io_uring` is a requirement, not a preference: where
    /// io_uring is denied the daemon does not start, and says why.
    @Test(arguments: [("1", "EPERM", "seccomp"), ("38", "ENOSYS", "built without io_uring")])
    func requiringIoUringWhereItIsDeniedFailsStartupNamingTheCauseAndTheFix(errno: String, name: String, hint: String) throws {
        let helper = try compileFixture("deny-io-uring")
        let directory = "/tmp/secureops-test-nouring-\(getpid())-\(name)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, output) = try run(helper, [errno, DaemonProcess.daemonPath, "--socket", directory + "/s.sock", "--state-dir", directory + "/state", "--io-backend", "io_uring"])
        #expect(status != 0)
        #expect(output.contains(name), "got \(output)")
        #expect(output.contains(hint), "got \(output)")
    }
}

// MARK: - Helpers

func runDaemon(_ arguments: [String]) throws -> (Int32, String) {
    try run(DaemonProcess.daemonPath, arguments)
}

/// Compiles `Fixtures/NAME.c` with the system C compiler, once per run.
func compileFixture(_ name: String) throws -> String {
    let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name).c").path
    let output = DaemonProcess.binaryDirectory + "/fixture-\(name)"
    if FileManager.default.fileExists(atPath: output) { return output }
    let compiler = FileManager.default.fileExists(atPath: "/usr/bin/cc") ? "/usr/bin/cc" : "/opt/swift/usr/bin/clang"
    let temporary = output + ".tmp.\(UUID().uuidString)"
    let (status, text) = try run(compiler, ["-O2", "-o", temporary, source])
    guard status == 0 else { throw TestFailure("compiling \(name).c failed:\n\(text)") }
    rename(temporary, output)
    return output
}
