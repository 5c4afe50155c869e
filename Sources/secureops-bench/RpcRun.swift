import Glibc
import Histogram

struct RpcSettings {
    var connections: Int
    var requests: Int
    var pipeline: Int
    var kind: RequestKind
    var progress = false
    var stallTimeout = 30.0
}

struct RpcOutcome {
    var completed: UInt64 = 0
    var errors: UInt64 = 0
    var firstError: String?
    var unanswered: UInt64 = 0
    var connectSeconds = 0.0
    var elapsedSeconds = 0.0
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
    var toolCPUSeconds = 0.0
    var serverCPUSeconds: Double?
    var serverRSS: Int?
    var interruptedByUser = false
    var stalled = false
}

/// Request/response throughput the way redis-benchmark measures it: each
/// connection writes `pipeline` requests in one send, waits for all their
/// responses, and repeats until `requests` have been answered in all.
/// Every response is one line; the tool counts lines and looks at their
/// first bytes only.
final class RpcRun {
    private let settings: RpcSettings
    private let server: ServerUnderTest
    private let wire: Wire
    private let poller: Poller
    private var connections: [RpcConnection] = []
    private let batch: [UInt8]
    private var batchesLeft: Int
    private let buffer: UnsafeMutablePointer<UInt8>
    private let capacity = 1 << 20
    private var outcome = RpcOutcome()
    private var lastResponseAt: UInt64 = 0

    init(settings: RpcSettings, server: ServerUnderTest, size: Int) throws {
        self.settings = settings
        self.server = server
        wire = Wire(target: server.target, size: size)
        let one = try wire.request(settings.kind)
        var batch: [UInt8] = []
        for _ in 0..<settings.pipeline { batch += one }
        self.batch = batch
        batchesLeft = (settings.requests + settings.pipeline - 1) / settings.pipeline
        poller = try Poller(capacity: 4096)
        buffer = .allocate(capacity: capacity * 2)
    }

    deinit {
        for connection in connections { close(connection.fd) }
        buffer.deallocate()
    }

    func run() throws -> RpcOutcome {
        let connectStart = monotonicNanos()
        for i in 0..<settings.connections {
            let fd = try UnixSocket.connect(server.socketPath)
            UnixSocket.setNonBlocking(fd)
            connections.append(RpcConnection(fd: fd))
            try poller.add(fd, token: UInt64(i))
        }
        outcome.connectSeconds = seconds(monotonicNanos() - connectStart)
        let probe = server.probe
        let serverCPUStart = probe?.cpuSeconds()
        let toolCPUStart = ownCPUSeconds()
        let start = monotonicNanos()
        lastResponseAt = start
        for connection in connections where batchesLeft > 0 { try sendBatch(connection) }

        var lastProgress = start
        var progressCount: UInt64 = 0
        while connections.contains(where: { $0.outstanding > 0 }) {
            if interrupted.load(ordering: .relaxed) { outcome.interruptedByUser = true; break }
            var failure: Error?
            poller.wait(timeoutMilliseconds: 50) { token, _ in
                do { try read(connections[Int(token)]) } catch { failure = error }
            }
            if let failure { throw failure }
            let now = monotonicNanos()
            if now - lastResponseAt > UInt64(settings.stallTimeout * 1e9) { outcome.stalled = true; break }
            if settings.progress && now - lastProgress > 250_000_000 {
                let rate = Double(outcome.completed - progressCount) / seconds(now - lastProgress)
                progressCount = outcome.completed
                lastProgress = now
                writeStandardError("\r\u{1B}[K\(Format.fixed(seconds(now - start), 1)) s  \(Format.rate(rate)) requests/s  answered \(outcome.completed)/\(settings.requests)")
            }
        }
        if settings.progress { writeStandardError("\r\u{1B}[K") }
        outcome.unanswered = connections.reduce(0) { $0 + UInt64($1.outstanding) }
        outcome.elapsedSeconds = seconds(max(lastResponseAt, start + 1) - start)
        outcome.toolCPUSeconds = ownCPUSeconds() - toolCPUStart
        if let end = probe?.cpuSeconds(), let begin = serverCPUStart { outcome.serverCPUSeconds = end - begin }
        outcome.serverRSS = probe?.residentBytes()
        return outcome
    }

    private func sendBatch(_ connection: RpcConnection) throws {
        batchesLeft -= 1
        connection.outstanding = settings.pipeline
        connection.sentAt = monotonicNanos()
        try UnixSocket.sendAll(connection.fd, batch)
    }

    private func read(_ connection: RpcConnection) throws {
        let (carried, n) = UnixSocket.receive(connection.fd, after: connection.carry, into: buffer, capacity: capacity)
        if n <= 0 {
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            throw BenchError("the server closed an rpc connection with \(connection.outstanding) requests unanswered"
                + (outcome.firstError.map { "; it said: \($0)" } ?? ""))
        }
        let now = monotonicNanos()
        let total = carried + n
        var start = 0
        while start < total, let hit = memchr(buffer + start, 0x0A, total - start) {
            let newline = buffer.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            var end = newline
            if end > start && buffer[end - 1] == 0x0D { end -= 1 }
            if end > start {
                let line = buffer + start
                let count = end - start
                if wire.isSuccess(line, count) {
                    outcome.completed &+= 1
                } else {
                    outcome.errors &+= 1
                    if outcome.firstError == nil {
                        outcome.firstError = String(decoding: UnsafeBufferPointer(start: line, count: min(count, 300)), as: UTF8.self)
                    }
                }
                _ = outcome.latency.record(min(now - connection.sentAt, 99_000_000_000))
                connection.outstanding -= 1
            }
            start = newline + 1
        }
        connection.carry.removeAll(keepingCapacity: true)
        if start < total { connection.carry.append(contentsOf: UnsafeBufferPointer(start: buffer + start, count: total - start)) }
        lastResponseAt = now
        if connection.outstanding <= 0 {
            connection.outstanding = 0
            if batchesLeft > 0 { try sendBatch(connection) }
        }
    }
}

final class RpcConnection {
    let fd: Int32
    var outstanding = 0
    var sentAt: UInt64 = 0
    var carry: [UInt8] = []
    init(fd: Int32) { self.fd = fd }
}
