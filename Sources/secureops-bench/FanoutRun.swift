import Glibc
import Histogram
import Synchronization

/// Set by SIGINT: the run stops, reports what it measured and stops its server.
let interrupted = Atomic<Bool>(false)

struct FanoutSettings {
    var subscribers: Int
    /// Publishes in all (split across publishers); ignored with `duration`.
    var alerts: Int
    /// Soak: publish for this many seconds instead of a count.
    var duration: Double?
    var size: Int
    var publishers: Int = 1
    /// Publishes per second across all publishers; nil: as fast as acks allow.
    var rate: Double?
    /// Publishes in flight (sent, not yet acknowledged) per publisher.
    var window: Int = 64
    /// How far all publishers together may run ahead of what the average
    /// subscriber has received, in alerts; nil: no bound. An acknowledged
    /// publish has only been queued by secureopsd, so without this bound a
    /// publisher faster than the readers builds a queue in the server, and
    /// latency at full speed measures that queue, not delivery. 256 lets a
    /// server fill a 64 KiB send per subscriber with 256-byte alerts
    /// (BENCHMARKS.md, "How far publishers run ahead").
    var backlog: Int? = 256
    /// Seconds without a delivery after the last publish before the rest
    /// counts as lost.
    var drainTimeout: Double = 10
    var progress: Bool = false
    /// Soak: print one row per interval, as it goes.
    var interval: Double?
    /// Print soak rows to stderr (stdout carries the JSON).
    var rowsToStandardError = false
    /// Soak: connections per second that connect, subscribe and hang up
    /// while publishing goes on (each lives `churnLifetime` seconds and is
    /// closed without reading what it was sent).
    var churn: Double = 0
    var churnLifetime: Double = 0.25
    /// Soak: subscribers that subscribe and then never read a byte.
    var stuck: Int = 0
    /// How subscribers' sockets are read.
    var receiver: Receiver = .ioUring
    /// io_uring: buffers in the shared receive pool (64 KiB each).
    var receiveBuffers = 128
}

/// How the tool reads its subscribers' sockets.
enum Receiver: String, CaseIterable {
    /// One multishot recv per socket on io_uring, provided buffers (default).
    case ioUring = "io_uring"
    /// epoll readiness, then one `recv` per ready socket (the classic way;
    /// kept to compare, and for kernels without io_uring).
    case epoll
}

/// What one fan-out run measured.
struct FanoutOutcome {
    var subscribers = 0
    var subscribed = 0
    var connectSeconds = 0.0
    var subscribeSeconds = 0.0
    var published: UInt64 = 0
    var publishErrors: UInt64 = 0
    var firstPublishError: String?
    var publishSeconds = 0.0
    var deliveries: UInt64 = 0
    var deliveredBytes: UInt64 = 0
    var elapsedSeconds = 0.0
    var lost: UInt64 = 0
    var duplicated: UInt64 = 0
    var reordered: UInt64 = 0
    var lagEvents: UInt64 = 0
    var laggedSkipped: UInt64 = 0
    var lagNoticeMismatches: UInt64 = 0
    var unexpectedFrames: UInt64 = 0
    var firstUnexpectedFrame: String?
    var disconnected = 0
    /// Reads that returned data (`recv` calls, or io_uring receive completions).
    var recvCalls: UInt64 = 0
    /// io_uring receives that found the shared buffer pool empty (re-armed).
    var starvedReceives = 0
    /// The furthest the publishers ran ahead of the average subscriber,
    /// in alerts, right after a publish.
    var maxBacklog = 0
    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
    var toolCPUSeconds = 0.0
    var serverCPUSeconds: Double?
    var serverRSSBefore: Int?
    var serverRSSSubscribed: Int?
    var serverRSSEnd: Int?
    var interruptedByUser = false
    var stalled = false
    /// Soak: churning connections opened (and closed) while publishing.
    var churned = 0
    /// Soak: never-reading subscribers, and how many of them the server
    /// had hung up on by the end.
    var stuck = 0
    var stuckClosedByServer = 0
    var serverDescriptorsSubscribed: Int?
    var serverDescriptorsEnd: Int?
}

/// One fan-out run: N subscribers and P publishers on one loop in one
/// thread. Subscribers are read through io_uring (`SubscriberRing`) or epoll
/// and `recv`; the bytes are split into lines (checked where the next newline
/// must be, memchr otherwise), and two fixed places of each alert are read
/// (sequence, send time); nothing else of the body is decoded. Publishers
/// stay on epoll (a handful of sockets).
final class FanoutRun {
    private let wire: Wire
    private let template: PublishTemplate
    private let settings: FanoutSettings
    private let server: ServerUnderTest
    private let poller: Poller
    /// Set with `--receiver io_uring`: subscribers are read here, not polled.
    private let subscriberRing: SubscriberRing?
    /// Sequence streams a subscriber tracks: secureopsd numbers every alert
    /// in one stream; with Redis each publisher numbers its own.
    private let streams: Int

    // Subscribers, struct-of-arrays.
    private var subscriberFDs: [Int32] = []
    private let expected: UnsafeMutablePointer<UInt64>
    private var subscribedFlags: [Bool]
    private var subscribedCount = 0
    private var carries: [[UInt8]]
    /// Redis: position inside the current RESP array (lines seen) and its kind.
    private let respLine: UnsafeMutablePointer<UInt8>
    private let respKind: UnsafeMutablePointer<UInt8>
    /// Sequences a gap skipped over, per (subscriber, stream), kept only
    /// when a gap happened: a later arrival is a reorder, never one is loss.
    private var missing: [Int: Set<UInt64>] = [:]
    private var lostBeyondTracking: UInt64 = 0

    private var publishers: [Publisher] = []
    private let receiveBuffer: UnsafeMutablePointer<UInt8>
    /// secureopsd alerts from this tool's publishers all have the same
    /// length after their sequence digits (the timestamp, severity, source
    /// and message are fixed-size), learned from the first one: the next
    /// alert's newline can then be checked where it must be instead of
    /// searched for. 0 until learned.
    private var alertTail = 0
    private let alertSuffix: SuffixWords
    private let receiveCapacity = 1 << 20
    private let maximumCarry = (1 << 20) + 64

    private var outcome = FanoutOutcome()
    private let target: Target
    private let latencies = LatencyRecorder()
    private let alertScan = AlertScan()
    /// Soak: the latencies of the current interval only.
    private let intervalLatencies: LatencyRecorder?
    private var lastDeliveryAt: UInt64 = 0
    private var startedAt: UInt64 = 0
    private var totalSent = 0
    private var publishing = false
    private var publishDeadline: UInt64 = .max
    /// Soak: churning connections alive now (descriptor, opened at).
    private var churners: [(fd: Int32, openedAt: UInt64)] = []
    private var stuckFDs: [Int32] = []

    private static let publisherTag: UInt64 = 1 << 40
    private static let subscribeOKPrefix: [UInt8] = Array(#"{"type":"ok","subscribed":true"#.utf8)
    private static let nextKey: [UInt8] = Array(#""next":"#.utf8)
    private static let errPrefix: [UInt8] = Array(#"{"type":"err""#.utf8)
    private static let skippedKey: [UInt8] = Array(#""skipped":"#.utf8)
    private static let resumeAtKey: [UInt8] = Array(#""resumeAt":"#.utf8)
    private static let publishOKPrefix: [UInt8] = Array(#"{"type":"ok","sequence":"#.utf8)

    init(settings: FanoutSettings, server: ServerUnderTest) throws {
        self.settings = settings
        self.server = server
        wire = Wire(target: server.target, size: settings.size)
        alertSuffix = SuffixWords(Wire.deliveredSuffix(server.target))
        target = server.target
        intervalLatencies = settings.interval != nil ? LatencyRecorder() : nil
        template = PublishTemplate(wire: wire)
        poller = try Poller(capacity: 4096)
        if settings.receiver == .ioUring {
            let ring = try SubscriberRing(bufferCount: settings.receiveBuffers)
            ring.watch(poller.fd)
            subscriberRing = ring
        } else {
            subscriberRing = nil
        }
        streams = server.target == .redis ? settings.publishers : 1
        let n = settings.subscribers
        expected = .allocate(capacity: max(1, n * streams))
        expected.initialize(repeating: server.target == .redis ? 1 : 0, count: max(1, n * streams))
        subscribedFlags = [Bool](repeating: false, count: n)
        carries = [[UInt8]](repeating: [], count: n)
        respLine = .allocate(capacity: max(1, n))
        respLine.initialize(repeating: 0, count: max(1, n))
        respKind = .allocate(capacity: max(1, n))
        respKind.initialize(repeating: 0, count: max(1, n))
        receiveBuffer = .allocate(capacity: receiveCapacity + maximumCarry)
        outcome.subscribers = n
    }

    deinit {
        for fd in subscriberFDs where fd >= 0 { close(fd) }
        for publisher in publishers { close(publisher.fd) }
        for churner in churners { close(churner.fd) }
        for fd in stuckFDs { close(fd) }
        expected.deallocate()
        respLine.deallocate()
        respKind.deallocate()
        receiveBuffer.deallocate()
    }

    // MARK: - Run

    func run() throws -> FanoutOutcome {
        let probe = server.probe
        outcome.serverRSSBefore = probe?.residentBytes()
        try subscribeAll()
        try subscribeStuck()
        // Let the server's allocations settle before reading memory.
        usleep(200_000)
        outcome.serverRSSSubscribed = probe?.residentBytes()
        outcome.serverDescriptorsSubscribed = probe?.openDescriptors()
        if settings.alerts > 0 || settings.duration != nil {
            try publishAndDrain()
        }
        for churner in churners { close(churner.fd) }
        churners.removeAll()
        countStuckClosedByServer()
        // Give the server a moment to reap the churners' hang-ups.
        if settings.churn > 0 { usleep(200_000) }
        outcome.serverRSSEnd = probe?.residentBytes()
        outcome.serverDescriptorsEnd = probe?.openDescriptors()
        outcome.latency = latencies.histogram()
        finishAccounting()
        return outcome
    }

    /// Connects every subscriber (a blocking connect each, as fast as the
    /// server's backlog takes them), sends `subscribe` on each at once, and
    /// waits until every one is confirmed.
    private func subscribeAll() throws {
        let request = wire.subscribeRequest
        let begin = monotonicNanos()
        var lastProgress = begin
        subscriberFDs.reserveCapacity(settings.subscribers)
        for i in 0..<settings.subscribers {
            let fd = try UnixSocket.connect(server.socketPath)
            UnixSocket.setNonBlocking(fd)
            subscriberFDs.append(fd)
            if let subscriberRing {
                subscriberRing.add(fd, index: i)
            } else {
                try poller.add(fd, token: UInt64(i))
            }
            try UnixSocket.sendAll(fd, request)
            if i & 255 == 255 {
                turn(timeoutMilliseconds: 0)
                if settings.progress && monotonicNanos() - lastProgress > 250_000_000 {
                    lastProgress = monotonicNanos()
                    progressLine("connecting \(i + 1)/\(settings.subscribers), subscribed \(subscribedCount)")
                }
            }
            if interrupted.load(ordering: .relaxed) { throw BenchError("interrupted") }
        }
        outcome.connectSeconds = seconds(monotonicNanos() - begin)
        var lastCount = subscribedCount
        var lastChange = monotonicNanos()
        while subscribedCount < settings.subscribers {
            turn(timeoutMilliseconds: 5)
            let now = monotonicNanos()
            if subscribedCount != lastCount { lastCount = subscribedCount; lastChange = now }
            if now - lastChange > 30_000_000_000 {
                throw BenchError("only \(subscribedCount) of \(settings.subscribers) subscriptions were confirmed after 30 s without progress"
                    + (outcome.firstUnexpectedFrame.map { "; the server said: \($0)" } ?? ""))
            }
            if interrupted.load(ordering: .relaxed) { throw BenchError("interrupted") }
            if settings.progress && now - lastProgress > 250_000_000 {
                lastProgress = now
                progressLine("subscribed \(subscribedCount)/\(settings.subscribers)")
            }
        }
        outcome.subscribed = subscribedCount
        outcome.subscribeSeconds = seconds(monotonicNanos() - begin)
        if outcome.disconnected > 0 {
            throw BenchError("\(outcome.disconnected) subscribers were disconnected while subscribing"
                + (outcome.firstUnexpectedFrame.map { "; the server said: \($0)" } ?? ""))
        }
    }

    /// Soak: subscribers that never read. They are not polled; whatever the
    /// server sends piles up in their socket until it gives up on them.
    private func subscribeStuck() throws {
        guard settings.stuck > 0 else { return }
        for _ in 0..<settings.stuck {
            let fd = try UnixSocket.connect(server.socketPath)
            try UnixSocket.sendAll(fd, wire.subscribeRequest)
            stuckFDs.append(fd)
        }
        outcome.stuck = settings.stuck
    }

    /// A peer that hung up shows as POLLHUP on a Unix stream socket.
    private func countStuckClosedByServer() {
        var closed = 0
        for fd in stuckFDs {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLHUP) != 0 { closed += 1 }
        }
        outcome.stuckClosedByServer = closed
    }

    /// Soak: opens the churning connections that are due and hangs up on
    /// those past their lifetime.
    private func churn(now: UInt64) {
        let lifetime = UInt64(settings.churnLifetime * 1e9)
        while let oldest = churners.first, now - oldest.openedAt >= lifetime {
            close(oldest.fd)
            churners.removeFirst()
        }
        guard publishing else { return }
        let due = Int(seconds(now - startedAt) * settings.churn)
        while outcome.churned < due {
            guard let fd = try? UnixSocket.connect(server.socketPath) else { return }
            UnixSocket.setNonBlocking(fd)
            _ = try? UnixSocket.sendAll(fd, wire.subscribeRequest)
            churners.append((fd, now))
            outcome.churned += 1
        }
    }

    private func publishAndDrain() throws {
        let count = settings.publishers
        for p in 0..<count {
            let fd = try UnixSocket.connect(server.socketPath)
            UnixSocket.setNonBlocking(fd)
            let quota = settings.duration != nil ? Int.max / 2 : settings.alerts / count + (p < settings.alerts % count ? 1 : 0)
            let publisher = Publisher(fd: fd, index: p, quota: quota, capacity: settings.window * template.maximumLength)
            publishers.append(publisher)
            try poller.add(fd, token: Self.publisherTag | UInt64(p))
        }
        let probe = server.probe
        let serverCPUStart = probe?.cpuSeconds()
        let toolCPUStart = ownCPUSeconds()
        startedAt = monotonicNanos()
        lastDeliveryAt = startedAt
        if let duration = settings.duration { publishDeadline = startedAt + UInt64(duration * 1e9) }
        publishing = true

        var lastProgress = startedAt
        var lastInterval = startedAt
        var intervalDeliveries: UInt64 = 0
        var intervalServerCPU = serverCPUStart
        var intervalToolCPU = toolCPUStart
        var progressDeliveries: UInt64 = 0
        var publishFinishedAt: UInt64 = 0
        var ends: [UInt64] = []
        var nextDrainCheck: UInt64 = 0

        if let interval = settings.interval {
            _ = interval
            let titles: [(String, Int)] = [("time", 8), ("deliveries/s", 14), ("p50 ms", 11), ("p99 ms", 11), ("max ms", 11),
                                           ("server RSS MiB", 16), ("server fds", 12), ("server CPU", 12), ("tool CPU", 10),
                                           ("churned", 9), ("gaps", 6), ("lagged", 8)]
            row(titles.map { Format.leftPad($0.0, $0.1) }.joined())
        }

        while true {
            if interrupted.load(ordering: .relaxed) { outcome.interruptedByUser = true; break }
            var now = monotonicNanos()
            var waitMilliseconds: Int32 = 5
            if publishing {
                if now >= publishDeadline { publishing = false }
                for publisher in publishers { try pump(publisher, now: now) }
                if let rate = settings.rate, publishing {
                    let due = startedAt + UInt64(Double(totalSent) / rate * 1e9)
                    if due > now { waitMilliseconds = Int32(min(5, max(1, (due - now) / 1_000_000))) } else { waitMilliseconds = 1 }
                }
            }
            turn(timeoutMilliseconds: waitMilliseconds)
            now = monotonicNanos()
            if settings.churn > 0 { churn(now: now) }

            if publishFinishedAt == 0 && publishers.allSatisfy({ $0.isFinished(publishing: publishing) }) {
                publishFinishedAt = now
                publishing = false
                outcome.publishSeconds = seconds(now - startedAt)
                ends = streamEnds()
            }
            if publishFinishedAt != 0 && now >= nextDrainCheck {
                nextDrainCheck = now + 2_000_000
                if allDelivered(ends) { break }
                if now - lastDeliveryAt > UInt64(settings.drainTimeout * 1e9) && now - publishFinishedAt > UInt64(settings.drainTimeout * 1e9) {
                    outcome.stalled = true
                    break
                }
            }
            if publishFinishedAt == 0 && now - lastDeliveryAt > 30_000_000_000 && publishers.allSatisfy({ $0.acked == $0.lastAckedCount }) {
                // Neither deliveries nor acknowledgements for 30 s: the
                // server is stuck; report what we have.
                outcome.stalled = true
                break
            }
            for publisher in publishers { publisher.lastAckedCount = publisher.acked }
            if settings.progress && now - lastProgress > 250_000_000 {
                let rate = Double(outcome.deliveries - progressDeliveries) / seconds(now - lastProgress)
                progressDeliveries = outcome.deliveries
                lastProgress = now
                let published = publishers.reduce(0) { $0 + $1.acked }
                let target = settings.duration == nil ? "/\(settings.alerts)" : ""
                progressLine("\(Format.fixed(seconds(now - startedAt), 1)) s  \(Format.rate(rate)) deliveries/s  published \(published)\(target)  p99 \(Format.milliseconds(latencies.histogram().valueAtPercentile(99)))  gaps \(gapCount())")
            }
            if let intervalSeconds = settings.interval, now - lastInterval >= UInt64(intervalSeconds * 1e9) {
                let span = seconds(now - lastInterval)
                let serverCPU = probe?.cpuSeconds()
                let toolCPU = ownCPUSeconds()
                let interval = intervalLatencies?.histogram() ?? LatencyRecorder.emptyHistogram()
                let serverShare: Double? = if let serverCPU, let intervalServerCPU { (serverCPU - intervalServerCPU) / span * 100 } else { nil }
                let columns: [(String, Int)] = [
                    ("\(Int(seconds(now - startedAt).rounded()))s", 8),
                    (Format.grouped(Double(outcome.deliveries - intervalDeliveries) / span), 14),
                    (Format.fixed(Double(interval.valueAtPercentile(50)) / 1e6, 3), 11),
                    (Format.fixed(Double(interval.valueAtPercentile(99)) / 1e6, 3), 11),
                    (Format.fixed(Double(interval.max) / 1e6, 3), 11),
                    (probe?.residentBytes().map { Format.fixed(Double($0) / 1_048_576, 1) } ?? "-", 16),
                    (probe?.openDescriptors().map { "\($0)" } ?? "-", 12),
                    (serverShare.map { "\(Int($0.rounded()))%" } ?? "-", 12),
                    ("\(Int(((toolCPU - intervalToolCPU) / span * 100).rounded()))%", 10),
                    ("\(outcome.churned)", 9),
                    ("\(gapCount())", 6),
                    ("\(outcome.laggedSkipped)", 8),
                ]
                row(columns.map { Format.leftPad($0.0, $0.1) }.joined())
                intervalLatencies?.reset()
                intervalDeliveries = outcome.deliveries
                intervalServerCPU = serverCPU
                intervalToolCPU = toolCPU
                lastInterval = now
            }
        }
        if settings.progress { clearProgressLine() }
        outcome.published = publishers.reduce(0) { $0 + UInt64($1.acked) }
        outcome.publishErrors = publishers.reduce(0) { $0 + UInt64($1.errors) }
        outcome.firstPublishError = publishers.lazy.compactMap(\.firstError).first
        if outcome.publishSeconds == 0 { outcome.publishSeconds = seconds(monotonicNanos() - startedAt) }
        outcome.elapsedSeconds = seconds(max(lastDeliveryAt, startedAt + 1) - startedAt)
        outcome.toolCPUSeconds = ownCPUSeconds() - toolCPUStart
        outcome.starvedReceives = subscriberRing?.starvedReceives ?? 0
        if let end = probe?.cpuSeconds(), let start = serverCPUStart { outcome.serverCPUSeconds = end - start }
        if ends.isEmpty { ends = streamEnds() }
        finalEnds = ends
    }

    private var finalEnds: [UInt64] = []

    /// One past the last sequence published, per stream.
    private func streamEnds() -> [UInt64] {
        switch server.target {
        case .secureops:
            let last = publishers.map(\.maxSequence).max() ?? 0
            return [last + 1]
        case .redis:
            return publishers.map { $0.nextSequence - UInt64($0.inflight) }
        }
    }

    private func allDelivered(_ ends: [UInt64]) -> Bool {
        for i in 0..<subscriberFDs.count where subscriberFDs[i] >= 0 {
            for s in 0..<streams where expected[i * streams + s] < ends[s] { return false }
        }
        return true
    }

    /// Sequences currently known missing (gaps not yet filled).
    private func gapCount() -> Int {
        missing.values.reduce(0) { $0 + $1.count }
    }

    private func finishAccounting() {
        var lost = lostBeyondTracking + UInt64(gapCount())
        if !finalEnds.isEmpty {
            for i in 0..<subscriberFDs.count {
                for s in 0..<streams where expected[i * streams + s] < finalEnds[s] {
                    lost += finalEnds[s] - expected[i * streams + s]
                }
            }
        }
        outcome.lost = lost
    }

    // MARK: - The loop

    /// One turn: wait (up to the timeout) for data or readiness and serve it.
    @inline(__always)
    private func turn(timeoutMilliseconds: Int32) {
        guard let subscriberRing else {
            poller.wait(timeoutMilliseconds: timeoutMilliseconds) { token, events in
                if token & Self.publisherTag != 0 {
                    servePublisher(Int(token & 0xFFFF_FFFF), events: events)
                } else {
                    readSubscriber(Int(token))
                }
            }
            return
        }
        subscriberRing.turn(
            timeoutMilliseconds: timeoutMilliseconds,
            received: { i, bytes, count in receivedOnRing(i, bytes, count) },
            ended: { i, _ in subscriberEnded(i) },
            woken: { servePublishers() })
        // The ring's poll of the epoll descriptor fires on a wake-up, not
        // while events stay pending: look once more each turn.
        servePublishers()
    }

    private func servePublishers() {
        poller.wait(timeoutMilliseconds: 0) { token, events in
            servePublisher(Int(token & 0xFFFF_FFFF), events: events)
        }
    }

    @inline(__always)
    private func servePublisher(_ index: Int, events: UInt32) {
        let publisher = publishers[index]
        if events & Poller.writable != 0 { try? flush(publisher) }
        if events & (Poller.readable | Poller.hangUp) != 0 {
            readPublisher(publisher)
            // Refill the window now, not after this turn's subscriber
            // reads: the publish round trip must not wait on the
            // tool's own receive work.
            if publishing && settings.rate == nil { try? pump(publisher, now: monotonicNanos()) }
        }
    }

    // MARK: - Subscribers

    /// epoll: one `recv` behind the carried unfinished line.
    private func readSubscriber(_ i: Int) {
        let fd = subscriberFDs[i]
        guard fd >= 0 else { return }
        let (carried, n) = UnixSocket.receive(fd, after: carries[i], into: receiveBuffer, capacity: receiveCapacity)
        if n <= 0 {
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            subscriberEnded(i)
            return
        }
        outcome.recvCalls &+= 1
        consume(i, receiveBuffer, total: carried + n)
    }

    /// io_uring: the bytes sit in a provided buffer and are split in place.
    /// A read that ends inside a line left that line's start in the carry:
    /// only that one line is joined (in the scratch buffer), not the whole read.
    @inline(__always)
    private func receivedOnRing(_ i: Int, _ bytes: UnsafeMutablePointer<UInt8>, _ count: Int) {
        outcome.recvCalls &+= 1
        let carried = carries[i].count
        if carried == 0 {
            consume(i, bytes, total: count)
            return
        }
        guard let hit = memchr(bytes, 0x0A, count) else {
            guard carried + count <= maximumCarry else {
                unexpected(i, bytes, min(count, 200), note: "a line longer than 1 MiB")
                carries[i].removeAll()
                return
            }
            carries[i].append(contentsOf: UnsafeBufferPointer(start: bytes, count: count))
            return
        }
        let head = bytes.distance(to: hit.assumingMemoryBound(to: UInt8.self)) + 1
        carries[i].withUnsafeBufferPointer { receiveBuffer.update(from: $0.baseAddress!, count: carried) }
        (receiveBuffer + carried).update(from: bytes, count: head)
        consume(i, receiveBuffer, total: carried + head)
        if head < count { consume(i, bytes + head, total: count - head) }
    }

    /// The server closed this subscriber: whatever it has not received
    /// counts as lost at the end.
    private func subscriberEnded(_ i: Int) {
        let fd = subscriberFDs[i]
        guard fd >= 0 else { return }
        outcome.disconnected += 1
        if let subscriberRing { subscriberRing.remove(index: i) } else { poller.remove(fd) }
        close(fd)
        subscriberFDs[i] = -1
    }

    /// Splits `total` bytes (beginning with the unfinished line kept from
    /// the previous read, if there was one, already copied in front) into
    /// frames and accounts for each; keeps the new unfinished tail.
    @inline(__always)
    private func consume(_ i: Int, _ buffer: UnsafeMutablePointer<UInt8>, total: Int) {
        let now = monotonicNanos()
        var start = 0
        // The hot loop: counters stay in locals (class properties would pay
        // for exclusivity checks on every frame).
        var deliveries: UInt64 = 0
        var deliveredBytes = 0
        var tail = alertTail
        let suffix = alertSuffix
        let suffixCount = suffix.count
        let prefixCount = Wire.alertPrefix.count
        while start < total {
            let remaining = total - start
            if tail > 0 && target == .secureops && alertScan.isAlert(buffer + start, remaining) {
                // Fast path: one of our alerts ends `tail` bytes after its
                // sequence digits, with the fixed suffix and a newline. Any
                // other frame fails these checks and is split with memchr.
                let line = buffer + start
                let (sequence, digitsEnd) = parseDecimal(line, from: prefixCount, end: remaining)
                let length = digitsEnd + tail
                if length <= remaining && line[length - 1] == 0x0A
                    && suffix.matches(line + length - 1 - suffixCount) {
                    deliveries &+= 1
                    deliveredBytes &+= length
                    measure(line, length - 1, now: now)
                    account(i, stream: 0, sequence: sequence)
                    start += length
                    continue
                }
            }
            guard let hit = memchr(buffer + start, 0x0A, total - start) else { break }
            let newline = buffer.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            var end = newline
            if end > start && buffer[end - 1] == 0x0D { end -= 1 }
            let line = buffer + start
            let count = end - start
            if target == .secureops && alertScan.isAlert(line, count) {
                let (sequence, digitsEnd) = parseDecimal(line, from: prefixCount, end: count)
                if count > digitsEnd + suffixCount && suffix.matches(line + count - suffixCount) {
                    tail = count + 1 - digitsEnd
                }
                deliveries &+= 1
                deliveredBytes &+= count &+ 1
                measure(line, count, now: now)
                account(i, stream: 0, sequence: sequence)
            } else if count > 0 {
                if handleOtherLine(i, line, count, now: now) {
                    deliveries &+= 1
                    deliveredBytes &+= count &+ 1
                }
            }
            start = newline + 1
        }
        alertTail = tail
        if deliveries > 0 {
            outcome.deliveries &+= deliveries
            outcome.deliveredBytes &+= UInt64(deliveredBytes)
            lastDeliveryAt = now
        }
        if start < total {
            let tail = total - start
            if tail > maximumCarry {
                unexpected(i, buffer + start, min(tail, 200), note: "a line longer than 1 MiB")
                carries[i].removeAll()
                return
            }
            carries[i].removeAll(keepingCapacity: true)
            carries[i].append(contentsOf: UnsafeBufferPointer(start: buffer + start, count: tail))
        } else if !carries[i].isEmpty {
            carries[i].removeAll(keepingCapacity: true)
        }
    }

    /// Records the publish-to-delivery latency from the send time the
    /// publisher wrote as the 19 digits right before `","details":null}`.
    @inline(__always)
    private func measure(_ line: UnsafeMutablePointer<UInt8>, _ count: Int, now: UInt64) {
        let digitsEnd = count - alertSuffix.count
        guard digitsEnd - Wire.timestampDigits > Wire.alertPrefix.count, line[digitsEnd] == UInt8(ascii: "\"") else { return }
        guard let sentAt = AlertScan.parse19Digits(line + digitsEnd - Wire.timestampDigits), sentAt > 0, sentAt <= now else { return }
        latencies.record(nanoseconds: now - sentAt)
        intervalLatencies?.record(nanoseconds: now - sentAt)
    }

    /// Per (subscriber, stream): the next sequence must be the one expected.
    @inline(__always)
    private func account(_ i: Int, stream: Int, sequence: UInt64) {
        let k = i * streams + stream
        let want = expected[k]
        if sequence == want {
            expected[k] = want &+ 1
        } else {
            anomaly(k, sequence: sequence, expected: want)
        }
    }

    /// A sequence out of line: a gap (remembered, so a later arrival counts
    /// as a reorder and none as a loss), a reorder or a duplicate.
    @inline(never)
    private func anomaly(_ k: Int, sequence: UInt64, expected want: UInt64) {
        if sequence > want {
            let gap = sequence - want
            if gap <= 100_000 {
                missing[k, default: []].formUnion(want..<sequence)
            } else {
                lostBeyondTracking += gap
            }
            expected[k] = sequence &+ 1
        } else if missing[k]?.remove(sequence) != nil {
            outcome.reordered += 1
            if missing[k]?.isEmpty == true { missing[k] = nil }
        } else {
            outcome.duplicated += 1
        }
    }

    /// Everything but a secureopsd alert: subscribe confirmations, lag
    /// notices, and every RESP line. Returns true for a delivery.
    @inline(never)
    private func handleOtherLine(_ i: Int, _ line: UnsafeMutablePointer<UInt8>, _ count: Int, now: UInt64) -> Bool {
        switch target {
        case .secureops: handleSecureOpsControlLine(i, line, count); return false
        case .redis: return handleRESPLine(i, line, count, now: now)
        }
    }

    private func handleSecureOpsControlLine(_ i: Int, _ line: UnsafeMutablePointer<UInt8>, _ count: Int) {
        if hasPrefix(Self.subscribeOKPrefix, line, count) {
            if let at = find(Self.nextKey, in: line, from: Self.subscribeOKPrefix.count, end: count) {
                expected[i] = parseDecimal(line, from: at, end: count).value
            }
            markSubscribed(i)
            return
        }
        if hasPrefix(Self.errPrefix, line, count),
           let at = find(Self.skippedKey, in: line, from: Self.errPrefix.count, end: count),
           let resumeAt = find(Self.resumeAtKey, in: line, from: Self.errPrefix.count, end: count) {
            // A lag notice: the server says exactly what it skipped. Not a
            // loss, but it must match our own count.
            let skipped = parseDecimal(line, from: at, end: count).value
            let resume = parseDecimal(line, from: resumeAt, end: count).value
            outcome.lagEvents += 1
            outcome.laggedSkipped += skipped
            if resume &- expected[i] != skipped { outcome.lagNoticeMismatches += 1 }
            if resume > expected[i] { expected[i] = resume }
            return
        }
        unexpected(i, line, count, note: nil)
    }

    /// RESP pub/sub: every push is `*3`, then `$7`/`message`, `$5`/channel,
    /// `$L`/payload (7 lines), or `$9`/`subscribe`, `$5`/channel, `:1`.
    @inline(__always)
    private func handleRESPLine(_ i: Int, _ line: UnsafeMutablePointer<UInt8>, _ count: Int, now: UInt64) -> Bool {
        let position = respLine[i]
        if position == 0 {
            if line[0] == UInt8(ascii: "*") { respLine[i] = 1 } else { unexpected(i, line, count, note: nil) }
            return false
        }
        respLine[i] = position &+ 1
        switch position {
        case 2:
            // The kind word: m(essage) or s(ubscribe).
            respKind[i] = line[0]
            return false
        case 5 where respKind[i] == UInt8(ascii: "s"):
            respLine[i] = 0
            markSubscribed(i)
            return false
        case 6 where respKind[i] == UInt8(ascii: "m"):
            respLine[i] = 0
            guard alertScan.isAlert(line, count) else {
                unexpected(i, line, count, note: nil)
                return false
            }
            let (sequence, next) = parseDecimal(line, from: Wire.alertPrefix.count, end: count)
            // ,"publisher":P
            let (publisher, _) = parseDecimal(line, from: next + 13, end: count)
            guard Int(publisher) < streams else {
                unexpected(i, line, count, note: nil)
                return false
            }
            measure(line, count, now: now)
            account(i, stream: Int(publisher), sequence: sequence)
            return true
        default:
            if position > 6 { respLine[i] = 0; unexpected(i, line, count, note: "RESP framing lost") }
            return false
        }
    }

    private func markSubscribed(_ i: Int) {
        guard !subscribedFlags[i] else { return }
        subscribedFlags[i] = true
        subscribedCount += 1
    }

    private func unexpected(_ i: Int, _ line: UnsafeMutablePointer<UInt8>, _ count: Int, note: String?) {
        outcome.unexpectedFrames += 1
        if outcome.firstUnexpectedFrame == nil {
            let text = String(decoding: UnsafeBufferPointer(start: line, count: min(count, 300)), as: UTF8.self)
            outcome.firstUnexpectedFrame = note.map { "\($0): \(text)" } ?? text
        }
    }

    // MARK: - Publishers

    /// Fills the publisher's window (within the rate budget) with freshly
    /// stamped publish requests and writes them in one send.
    private func pump(_ publisher: Publisher, now: UInt64) throws {
        if publisher.hasPending {
            try flush(publisher)
            if publisher.hasPending { return }
        }
        guard publishing else { return }
        var room = min(settings.window - publisher.inflight, publisher.quota - publisher.sent)
        if let rate = settings.rate {
            let allowed = Int(Double(now - startedAt) / 1e9 * rate) + 1
            room = min(room, allowed - totalSent)
        }
        if let backlog = settings.backlog, let ahead = publishedAheadOfReaders() {
            let backlogRoom = backlog - max(0, ahead)
            // Once stopped by the bound, wait for room for half of it:
            // topping up one alert at a time would make every publish its
            // own fan-out sweep, which measures the tool's pacing.
            if backlogRoom < (backlog + 1) / 2 { return }
            room = min(room, backlogRoom)
        }
        guard room > 0 else { return }
        defer { noteBacklog() }
        var end = 0
        for _ in 0..<room {
            end += template.write(to: publisher.out + end, sequence: publisher.nextSequence, publisher: publisher.index, timestamp: now)
            publisher.nextSequence += 1
        }
        publisher.pendingStart = 0
        publisher.pendingEnd = end
        publisher.sent += room
        publisher.inflight += room
        totalSent += room
        try flush(publisher)
    }

    private func noteBacklog() {
        if let ahead = publishedAheadOfReaders() { outcome.maxBacklog = max(outcome.maxBacklog, ahead) }
    }

    /// Alerts published beyond what the average subscriber still connected
    /// has received; nil without subscribers. Skipped (announced) alerts
    /// count as received: a lagged subscriber must not hold publishing back
    /// for good.
    private func publishedAheadOfReaders() -> Int? {
        let readers = subscriberFDs.count - outcome.disconnected
        guard readers > 0 else { return nil }
        return totalSent - Int((outcome.deliveries + outcome.laggedSkipped) / UInt64(readers))
    }

    private func flush(_ publisher: Publisher) throws {
        while publisher.hasPending {
            let n = send(publisher.fd, publisher.out + publisher.pendingStart, publisher.pendingEnd - publisher.pendingStart,
                         Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if n > 0 { publisher.pendingStart += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !publisher.waitingForRoom {
                    publisher.waitingForRoom = true
                    poller.modify(publisher.fd, token: Self.publisherTag | UInt64(publisher.index), events: Poller.readable | Poller.writable)
                }
                return
            }
            throw BenchError("publishing failed: \(errnoText())")
        }
        if publisher.waitingForRoom {
            publisher.waitingForRoom = false
            poller.modify(publisher.fd, token: Self.publisherTag | UInt64(publisher.index), events: Poller.readable)
        }
    }

    private func readPublisher(_ publisher: Publisher) {
        let (carried, n) = UnixSocket.receive(publisher.fd, after: publisher.carry, into: receiveBuffer, capacity: receiveCapacity)
        if n <= 0 {
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if publisher.firstError == nil { publisher.firstError = "the server closed the publisher's connection" }
            publisher.errors += publisher.inflight
            publisher.inflight = 0
            publisher.quota = publisher.sent
            poller.remove(publisher.fd)
            return
        }
        let total = carried + n
        var start = 0
        while let hit = memchr(receiveBuffer + start, 0x0A, total - start) {
            let newline = receiveBuffer.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            var end = newline
            if end > start && receiveBuffer[end - 1] == 0x0D { end -= 1 }
            let line = receiveBuffer + start
            let count = end - start
            if count > 0 {
                publisher.inflight -= 1
                if wire.isSuccess(line, count) {
                    publisher.acked += 1
                    if server.target == .secureops && hasPrefix(Self.publishOKPrefix, line, count) {
                        let sequence = parseDecimal(line, from: Self.publishOKPrefix.count, end: count).value
                        if sequence > publisher.maxSequence { publisher.maxSequence = sequence }
                    }
                } else {
                    publisher.errors += 1
                    if publisher.firstError == nil { publisher.firstError = String(decoding: UnsafeBufferPointer(start: line, count: min(count, 300)), as: UTF8.self) }
                }
            }
            start = newline + 1
            if start >= total { break }
        }
        publisher.carry.removeAll(keepingCapacity: true)
        if start < total { publisher.carry.append(contentsOf: UnsafeBufferPointer(start: receiveBuffer + start, count: total - start)) }
    }

    // MARK: - Output while running

    private func progressLine(_ text: String) {
        writeStandardError("\r\u{1B}[K" + text)
    }

    private func clearProgressLine() {
        writeStandardError("\r\u{1B}[K")
    }

    private func row(_ text: String) {
        if settings.progress { clearProgressLine() }
        if settings.rowsToStandardError {
            writeStandardError(text + "\n")
        } else {
            print(text)
            fflush(nil)
        }
    }
}

/// One publishing connection: a window of publishes in flight, written in
/// batches from its own buffer.
final class Publisher {
    let fd: Int32
    let index: Int
    var quota: Int
    let out: UnsafeMutablePointer<UInt8>
    var pendingStart = 0
    var pendingEnd = 0
    var inflight = 0
    var sent = 0
    var acked = 0
    var lastAckedCount = -1
    var errors = 0
    var firstError: String?
    /// Redis: this publisher's own sequence (secureopsd assigns its own).
    var nextSequence: UInt64 = 1
    /// secureopsd: the highest sequence an acknowledgement carried.
    var maxSequence: UInt64 = 0
    var carry: [UInt8] = []
    var waitingForRoom = false

    init(fd: Int32, index: Int, quota: Int, capacity: Int) {
        self.fd = fd
        self.index = index
        self.quota = quota
        out = .allocate(capacity: capacity)
    }

    deinit { out.deallocate() }

    var hasPending: Bool { pendingEnd > pendingStart }

    func isFinished(publishing: Bool) -> Bool {
        (sent >= quota || !publishing) && inflight == 0 && !hasPending
    }
}

/// A fixed 9-to-24-byte string compared with three 8-byte loads (the last
/// two may overlap): cheaper than a `memcmp` call per frame.
/// The constant end of this tool's alerts, compared with one `memcmp`.
final class SuffixWords {
    let count: Int
    private let bytes: UnsafeMutablePointer<UInt8>

    init(_ suffix: [UInt8]) {
        precondition(suffix.count > 8)
        count = suffix.count
        bytes = .allocate(capacity: suffix.count)
        bytes.initialize(from: suffix, count: suffix.count)
    }

    deinit {
        bytes.deallocate()
    }

    @inline(__always)
    func matches(_ p: UnsafePointer<UInt8>) -> Bool {
        memcmp(p, bytes, count) == 0
    }
}
