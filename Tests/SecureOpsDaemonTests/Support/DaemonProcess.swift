import Foundation
import Glibc
import SecureOpsSystem
import SecureOpsClient
import SecureOpsEngine
@_exported import TestSupport

/// A real `secureopsd` process on a private socket, for tests that talk to
/// it over the wire. Stopped (SIGKILL if need be) and cleaned up on deinit.
final class DaemonProcess: @unchecked Sendable {
    let directory: String
    let socketPath: String
    let stateDirectory: String
    let logPath: String
    private(set) var process: Process
    private var arguments: [String]
    /// A command the daemon is started through (e.g. `prlimit --nofile=…`);
    /// it must exec the daemon so the pid stays the daemon's.
    private let launcher: [String]

    /// The directory holding the built executables (next to the test bundle).
    static let binaryDirectory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }()

    static var daemonPath: String { binaryDirectory + "/secureopsd" }

    /// The backend the daemons of this run serve on (`--io-backend`), from
    /// SECUREOPS_TEST_IO_BACKEND; nil leaves the daemon's default (auto).
    static let backendUnderTest: String? = ProcessInfo.processInfo.environment["SECUREOPS_TEST_IO_BACKEND"]
    static var cliPath: String { binaryDirectory + "/secureops" }

    /// Starts a daemon and waits until it answers on its socket.
    init(
        extraArguments: [String] = [], policy: String? = nil, socketMode: String = "0660",
        directory: String? = nil, waitUntilServing: Bool = true, reachableByOtherUsers: Bool = false,
        launcher: [String] = []
    ) throws {
        self.launcher = launcher
        if let directory {
            self.directory = directory
        } else {
            var template = Array("/tmp/secureops-test-XXXXXX".utf8CString)
            guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed") }
            self.directory = String(cString: template)
        }
        socketPath = self.directory + "/run/secureopsd.sock"
        stateDirectory = self.directory + "/state"
        logPath = self.directory + "/daemon.log"
        if reachableByOtherUsers {
            // Another uid must be able to reach the socket for the daemon's
            // own authorization to be what refuses or admits it.
            chmod(self.directory, 0o755)
            mkdir(self.directory + "/run", 0o755)
            chmod(self.directory + "/run", 0o755)
        }
        var arguments = ["--socket", socketPath, "--state-dir", stateDirectory, "--socket-mode", socketMode, "--log-level", "debug"]
        if let policy {
            let policyPath = self.directory + "/policy.json"
            try policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
            chmod(policyPath, 0o644)
            arguments += ["--policy", policyPath]
        }
        arguments += extraArguments
        // `make test` runs this suite once per backend: SECUREOPS_TEST_IO_BACKEND
        // picks it for every daemon a test does not pin to one itself.
        if let backend = Self.backendUnderTest, !extraArguments.contains("--io-backend") {
            arguments += ["--io-backend", backend]
        }
        self.arguments = arguments
        process = Process()
        try launch()
        if waitUntilServing { try waitUntilAnswering() }
    }

    deinit {
        killAndWait(process)
        try? FileManager.default.removeItem(atPath: directory)
    }

    var policyPath: String { directory + "/policy.json" }
    var pid: Int32 { process.processIdentifier }

    private func launch() throws {
        let process = Process()
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [Self.daemonPath] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Self.daemonPath)
            process.arguments = arguments
        }
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardError = log
        process.standardOutput = log
        try process.run()
        self.process = process
    }

    /// Polls until a `ping` is answered (or the process exits). A connect
    /// alone is not enough: the listener's backlog accepts connections
    /// before the loop thread has set up its ring.
    func waitUntilAnswering(timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning {
                throw TestFailure("secureopsd exited with \(process.terminationStatus) before serving:\n\(log)")
            }
            // The listener must be this process's: right after a SIGKILL
            // the kernel may briefly keep the dead daemon's listener open.
            if let connection = try? SecureOpsConnection.connect(to: socketPath) {
                let owner = listenerPID(connection.fileDescriptor)
                let answered = owner == process.processIdentifier && (try? connection.ping()) != nil
                connection.close()
                if answered { return }
            }
            usleep(20_000)
        }
        throw TestFailure("secureopsd did not answer within \(timeout) s:\n\(log)")
    }

    func connect() throws -> SecureOpsConnection {
        try SecureOpsConnection.connect(to: socketPath)
    }

    /// Sends `signal` and waits for exit; returns the exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: Double = 20) throws -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, signal)
        return try waitForExit(timeout: timeout)
    }

    func waitForExit(timeout: Double = 20) throws -> Int32 {
        try TestSupport.waitForExit(process, within: timeout, what: "secureopsd")
    }

    /// Starts the same daemon again (same socket, state and policy).
    func restart() throws {
        if process.isRunning { try stop() }
        try launch()
        try waitUntilAnswering()
    }

    var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Polls `status` until `condition` holds or `timeout` passes.
    func waitForStatus(timeout: Double = 10, _ condition: (MonitorStatus) -> Bool) throws -> MonitorStatus {
        let deadline = Date().addingTimeInterval(timeout)
        var last: MonitorStatus?
        while Date() < deadline {
            let connection = try connect()
            let status = try connection.status()
            connection.close()
            // The polling connection itself counts; callers account for it.
            if condition(status) { return status }
            last = status
            usleep(20_000)
        }
        throw TestFailure("status never satisfied the condition; last: \(String(describing: last))")
    }
}

/// The pid that created the listening socket this client is connected to.
func listenerPID(_ fd: Int32) -> Int32 {
    guard case .success(let listener) = PeerCred.of(socket: fd) else { return -1 }
    return listener.pid
}


/// A raw socket for tests that need byte-level control.
final class RawClient {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let rc = UnixSocketAddress.connect(fd, to: Array(path.utf8))
        guard rc == 0 else {
            Glibc.close(fd)
            throw TestFailure("connect \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit { Glibc.close(fd) }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    func write(_ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send failed: \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    /// Reads until `count` lines arrived or EOF/timeout; returns the lines.
    func readLines(_ count: Int, timeout: Double = 10) -> [String] {
        var lines: [String] = []
        var pending: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while lines.count < count && Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            pending += chunk[0..<n]
            while let newline = pending.firstIndex(of: 0x0A) {
                lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
        }
        return lines
    }

    /// True if the daemon closed the connection (EOF) within `timeout`.
    func isClosedByPeer(timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
        return false
    }

    func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }
}

/// SIGKILLs a child started with Foundation's `Process` (if it still runs)
/// and waits, at most 10 s, until the kernel says it is gone. Not
/// `waitUntilExit()`: Foundation learns of an exit when a socket the child
/// inherited reaches end-of-file, and anything else holding that socket (a
/// process the child started, a stray read in this process) makes it wait
/// forever. A zombie counts as gone; Foundation still reaps it.
func killAndWait(_ process: Process) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, SIGKILL)
    let deadline = Date().addingTimeInterval(10)
    while process.isRunning && !childHasExited(pid: process.processIdentifier) && Date() < deadline {
        usleep(5_000)
    }
}

/// Whether `pid` has exited (a zombie not yet reaped, or gone), read from
/// /proc without reaping it.
func childHasExited(pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
    return state == "Z" || state == "X"
}
