import Foundation
import Glibc

/// The server a run measures: one the tool starts itself on a private
/// socket (and stops afterwards), or one already running at `--socket`.
final class ServerUnderTest {
    let target: Target
    let socketPath: String
    /// The server's pid (from SO_PEERCRED), for /proc memory and CPU.
    private(set) var pid: Int32?
    private var process: Process?
    private var directory: String?
    let startedByTool: Bool

    struct Options {
        var target: Target = .secureops
        var socket: String?
        var daemon: String?
        var serverCPUs: String?
        var serverArguments: [String] = []
    }

    init(_ options: Options) throws {
        target = options.target
        if let socket = options.socket {
            socketPath = socket
            startedByTool = false
        } else {
            var template = Array("/tmp/secureops-bench-XXXXXX".utf8CString)
            guard mkdtemp(&template) != nil else { throw BenchError("cannot create a temporary directory: \(errnoText())") }
            let directory = String(cString: template)
            self.directory = directory
            socketPath = directory + "/server.sock"
            startedByTool = true
            try launch(options, directory: directory)
        }
        pid = try waitUntilServing()
    }

    deinit { stop() }

    var probe: ProcessProbe? { pid.map { ProcessProbe(pid: $0) } }

    var description: String {
        let who = "\(target.serverName)\(pid.map { " (pid \($0))" } ?? "")"
        return startedByTool ? "\(who), started by the tool on \(socketPath)" : "\(who) on \(socketPath)"
    }

    private func launch(_ options: Options, directory: String) throws {
        var executable: String
        var arguments: [String]
        switch target {
        case .secureops:
            executable = options.daemon ?? Self.besideThisTool("secureopsd")
            guard access(executable, X_OK) == 0 else {
                throw BenchError("secureopsd not found at \(executable); build it (swift build -c release) or pass --daemon PATH")
            }
            arguments = ["--socket", socketPath, "--state-dir", directory + "/state", "--log-level", "warning"]
        case .redis:
            executable = options.daemon ?? Self.onPath("redis-server")
            guard access(executable, X_OK) == 0 else {
                throw BenchError("redis-server not found; install it (apt-get install redis-server) or pass --daemon PATH")
            }
            // The settings the comparison uses everywhere: no persistence,
            // no output-buffer limit for pub/sub (secureopsd never drops a
            // subscriber that keeps up either), room for 20,000 clients.
            arguments = ["--port", "0", "--unixsocket", socketPath, "--unixsocketperm", "700",
                         "--save", "", "--appendonly", "no", "--client-output-buffer-limit", "pubsub 0 0 0",
                         "--maxclients", "20000", "--daemonize", "no", "--dir", directory]
        }
        arguments += options.serverArguments
        if let cpus = options.serverCPUs {
            // taskset execs the server, so the pid stays the server's.
            arguments = ["-c", cpus, executable] + arguments
            executable = "/usr/bin/taskset"
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let logPath = directory + "/server.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
    }

    private func waitUntilServing(timeout: Double = 30) throws -> Int32? {
        let deadline = monotonicNanos() + UInt64(timeout * 1e9)
        var lastError = ""
        while monotonicNanos() < deadline {
            if let process, !process.isRunning {
                throw BenchError("\(target.serverName) exited with status \(process.terminationStatus) before serving:\n\(serverLog)")
            }
            do {
                let fd = try UnixSocket.connect(socketPath)
                let peer = UnixSocket.peerPID(fd)
                close(fd)
                // Our own server must be the one answering, not a leftover.
                if let process, peer != process.processIdentifier { usleep(20_000); continue }
                return peer
            } catch {
                lastError = "\(error)"
                if process == nil { throw BenchError("nothing answers on \(socketPath): \(lastError). Start the server or drop --socket to let the tool start one") }
            }
            usleep(20_000)
        }
        throw BenchError("\(target.serverName) did not answer on \(socketPath) within \(Int(timeout)) s (\(lastError))\n\(serverLog)")
    }

    var serverLog: String {
        guard let directory else { return "" }
        return (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
    }

    /// Stops a server the tool started (SIGTERM, then SIGKILL after 10 s)
    /// and removes its directory. A server given by --socket is left alone.
    func stop() {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = monotonicNanos() + 10_000_000_000
            while process.isRunning && monotonicNanos() < deadline { usleep(10_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        process = nil
        if let directory {
            try? FileManager.default.removeItem(atPath: directory)
            self.directory = nil
        }
    }

    static func besideThisTool(_ name: String) -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent + "/" + name
    }

    static func onPath(_ name: String) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/sbin", "/usr/bin"] {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return "/usr/bin/\(name)"
    }
}
