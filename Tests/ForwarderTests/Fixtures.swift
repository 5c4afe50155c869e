import Foundation
import Glibc
import Logging
import SecureOpsForwarder
import SecureOpsSystem
import Synchronization
import TestSupport

/// A free loopback TCP port: bound to port 0, read back, closed.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    defer { close(fd) }
    var address = loopback(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestFailure("bind/getsockname: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// Whether something accepts TCP connections on the loopback port.
func accepts(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = loopback(port: port)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A real nats-server with JetStream, killed (SIGKILL) when it goes away.
/// `start` again after `kill` runs it on the same port and store.
final class NATSServer {
    let port: Int
    let arguments: [String]
    let logPath: String
    private var process: Process?

    var url: String { "nats://127.0.0.1:\(port)" }

    /// A single server: `-js -sd <store> -a 127.0.0.1 -p <port>` and `extra`.
    convenience init(in scratch: ScratchDirectory, name: String = "nats", extra: [String] = []) throws {
        let port = try freePort()
        let store = scratch.path + "/\(name)-store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        self.init(port: port, arguments: ["-js", "-sd", store, "-a", "127.0.0.1", "-p", "\(port)"] + extra, log: scratch.path + "/\(name).log")
    }

    init(port: Int, arguments: [String], log: String) {
        self.port = port
        self.arguments = arguments
        logPath = log
    }

    func start() throws {
        precondition(process == nil, "already running")
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nats-server")
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        guard eventually(within: 15, { accepts(port: port) || !process.isRunning }), process.isRunning else {
            let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw TestFailure("nats-server \(arguments.joined(separator: " ")) did not start listening:\n\(output.suffix(2000))")
        }
    }

    func kill() {
        guard let process else { return }
        self.process = nil
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { kill() }
}

/// Three servers in one cluster (routes between them, `--cluster_name`
/// in the configuration), each with JetStream.
final class NATSCluster {
    let servers: [NATSServer]

    init(in scratch: ScratchDirectory) throws {
        let clientPorts = try (0..<3).map { _ in try freePort() }
        let routePorts = try (0..<3).map { _ in try freePort() }
        var servers: [NATSServer] = []
        for index in 0..<3 {
            let store = scratch.path + "/n\(index)-store"
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let routes = (0..<3).filter { $0 != index }.map { "\"nats-route://127.0.0.1:\(routePorts[$0])\"" }.joined(separator: ", ")
            let config = """
            server_name: n\(index)
            listen: 127.0.0.1:\(clientPorts[index])
            jetstream { store_dir: "\(store)" }
            cluster {
              name: secureops
              listen: 127.0.0.1:\(routePorts[index])
              routes: [\(routes)]
            }
            """
            let path = scratch.path + "/n\(index).conf"
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            servers.append(NATSServer(port: clientPorts[index], arguments: ["-c", path], log: scratch.path + "/n\(index).log"))
        }
        self.servers = servers
        for server in servers { try server.start() }
    }

    var urls: [String] { servers.map(\.url) }
}

/// A listener that completes TCP handshakes and never says a word: the
/// kernel accepts into the backlog, nobody reads or writes.
final class SilentListener {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard ok else { throw TestFailure("silent listener: errno \(errno)") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

/// The journal's stand-in: alerts in memory, numbered from 1; retention
/// simulated by dropping the oldest.
final class MemorySource: ForwardingSource, @unchecked Sendable {
    private let alerts = Mutex<[ForwardedAlert]>([])

    /// Appends `count` alerts; returns the last sequence.
    @discardableResult
    func append(_ count: Int) -> UInt64 {
        alerts.withLock { alerts in
            var next = (alerts.last?.sequence ?? 0) + 1
            for _ in 0..<count {
                alerts.append(MemorySource.alert(next))
                next += 1
            }
            return next - 1
        }
    }

    /// Starts numbering at `first`, as if retention dropped what was before.
    func startAt(_ first: UInt64) {
        alerts.withLock { alerts in
            precondition(alerts.isEmpty)
            alerts.append(MemorySource.alert(first))
        }
    }

    func records(from: UInt64, maxCount: Int) throws -> [ForwardedAlert] {
        alerts.withLock { alerts in
            guard let first = alerts.first?.sequence else { return [] }
            let start = from <= first ? 0 : Int(from - first)
            guard start < alerts.count else { return [] }
            return Array(alerts[start..<min(alerts.count, start + maxCount)])
        }
    }

    static let severities = ["info", "warning", "critical"]

    static func alert(_ sequence: UInt64) -> ForwardedAlert {
        let severity = severities[Int(sequence % 3)]
        return ForwardedAlert(sequence: sequence, severity: severity, frame: frame(sequence, severity))
    }

    static func frame(_ sequence: UInt64, _ severity: String) -> [UInt8] {
        Array(#"{"alert":{"seq":\#(sequence),"severity":"\#(severity)","rule":"test","detail":"x"}}"#.utf8)
    }
}

/// Counts calls from another thread.
final class GapRecorder: Sendable {
    private let gaps = Mutex<[ForwardingGap]>([])
    func record(_ gap: ForwardingGap) { gaps.withLock { $0.append(gap) } }
    var all: [ForwardingGap] { gaps.withLock { $0 } }
}

let testEpoch = "00000000000000a1"

func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["FORWARDER_TEST_LOG"] != nil ? .debug : .critical
    return logger
}

/// A forwarder of `source` to `servers`, its cursor in `cursorDirectory`.
func makeForwarder(
    _ configuration: ForwarderConfiguration,
    source: MemorySource,
    cursorDirectory: String,
    gaps: GapRecorder = GapRecorder()
) throws -> JetStreamForwarder {
    try JetStreamForwarder(
        configuration: configuration,
        source: source,
        epoch: testEpoch,
        cursorDirectory: OpenedDirectory.open(cursorDirectory),
        logger: quietLogger("forwarder"),
        onGap: { gaps.record($0) }
    )
}

/// Reads the whole stream back with an ephemeral consumer: `expected`
/// messages, then nothing more within a short wait.
func readStream(_ connection: NATSConnectionOptions, expected: Int) throws -> [TailedMessage] {
    let tail = try settled { try JetStreamTail(connection: connection) }
    defer { tail.close() }
    var messages: [TailedMessage] = []
    while messages.count < expected, let message = try tail.next(timeout: .seconds(5)) {
        messages.append(message)
    }
    if let extra = try tail.next(timeout: .milliseconds(300)) {
        messages.append(extra)
    }
    return messages
}

/// `body` once the servers can answer it: right after a cluster node died,
/// JetStream API calls time out until the survivors have elected leaders.
func settled<T>(within seconds: Double = 30, _ body: () throws -> T) throws -> T {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        do {
            return try body()
        } catch let error as NATSError where Date() < deadline {
            _ = error
            usleep(200_000)
        }
    }
}

/// The sequences in the messages' ids, checked to be 1...count each once.
func checkEachOnce(_ messages: [TailedMessage], count: Int) throws {
    var seen = [Int](repeating: 0, count: count + 1)
    for message in messages {
        guard let id = message.headers["Nats-Msg-Id"], id.hasPrefix(testEpoch + "-"), let sequence = Int(id.dropFirst(17)), sequence >= 1, sequence <= count else {
            throw TestFailure("unexpected message id \(message.headers["Nats-Msg-Id"] ?? "nil")")
        }
        seen[sequence] += 1
    }
    let missing = (1...count).filter { seen[$0] == 0 }
    let doubled = (1...count).filter { seen[$0] > 1 }
    guard missing.isEmpty, doubled.isEmpty, messages.count == count else {
        throw TestFailure("\(messages.count) messages; missing \(missing.prefix(10)) (\(missing.count)), more than once \(doubled.prefix(10)) (\(doubled.count))")
    }
}
