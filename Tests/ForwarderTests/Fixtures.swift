import Foundation
import Glibc
import Logging
import SecureOpsForwarder
import SecureOpsSystem
import Synchronization
import TestSupport

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
    /// One stored alert.
    struct Stored {
        var sequence: UInt64
        var severity: String
        var frame: [UInt8]
    }

    private let alerts = Mutex<[Stored]>([])

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

    func alerts(from: UInt64, maxCount: Int) throws -> ForwardedBatch {
        alerts.withLock { alerts in
            var batch = ForwardedBatch()
            guard let first = alerts.first?.sequence else { return batch }
            let start = from <= first ? 0 : Int(from - first)
            guard start < alerts.count else { return batch }
            for alert in alerts[start..<min(alerts.count, start + maxCount)] {
                alert.frame.withUnsafeBytes { batch.append(sequence: alert.sequence, severity: alert.severity, frame: $0) }
            }
            return batch
        }
    }

    static let severities = ["info", "warning", "critical"]

    static func alert(_ sequence: UInt64) -> Stored {
        let severity = severities[Int(sequence % 3)]
        return Stored(sequence: sequence, severity: severity, frame: frame(sequence, severity))
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
