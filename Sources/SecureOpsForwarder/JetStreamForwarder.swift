import CNATS
import Glibc
import Logging
import SecureOpsSystem

/// Forwards the source's alerts to a JetStream stream, exactly once, from
/// a thread of its own: the publisher appends to the source and calls
/// `notify(lastSequence:)`, which only takes a lock.
///
/// Each alert goes to `<prefix>.<host>.<severity>` with message id
/// `<epoch>-<sequence>`. Publishes are asynchronous, at most `window` in
/// flight. The acknowledged cursor (every sequence up to it stored) is
/// kept in a file, rewritten at most every `cursorSyncInterval`. After an
/// outage, a failed publish, an ack that never came or a restart, the
/// forwarder sends everything after the cursor again: the stream's
/// duplicate window drops what it already holds, so each alert is stored
/// once.
public final class JetStreamForwarder: NATSLinkEvents, @unchecked Sendable {
    public let configuration: ForwarderConfiguration
    private let source: any ForwardingSource
    private let epoch: String
    private let cursorFile: CursorFile
    private let logger: Logger
    private let onGap: @Sendable (ForwardingGap) -> Void
    private let shared: ConditionLock<Shared>
    /// `<prefix>.<host>.<severity>` per severity, made once (the forwarder
    /// thread's alone).
    private let subjects: SubjectCache
    /// Written by start and stop only (the owner's calls, not concurrent).
    private var thread: pthread_t?

    /// What the forwarder's thread and the other threads share.
    private struct Shared {
        var state: ForwarderState = .disabled
        var server: String?
        var lastError: String?
        var lastNotified: UInt64 = 0
        var window: AckWindow
        /// The next sequence to read from the source.
        var nextToRead: UInt64
        /// Gaps below this were reported already.
        var gapReportedThrough: UInt64
        /// No cursor of this epoch was stored: start at the source's first
        /// record, which is no gap.
        var startsFresh: Bool
        /// The last read returned all it was asked for (or nothing was
        /// read yet): there may be more than `lastNotified` says.
        var sourceMayHaveMore = true
        var droppedBeforeForwarding: UInt64 = 0
        /// Connected, with the library's connection up.
        var linkUp = false
        /// The library reconnected: check the stream and go back to the cursor.
        var reconnected = false
        /// The library closed the connection: make a new one.
        var linkClosed = false
        /// Why everything in flight must be sent again; nil when it need not.
        var resendReason: String?
        var resendAfterFailure = false
        /// Something for the forwarder's thread to look at.
        var work = false
        var stopping = false
    }

    /// - Parameters:
    ///   - epoch: 16 hex digits naming the source's incarnation; message ids
    ///     are `<epoch>-<sequence>` and a cursor of another epoch is ignored.
    ///   - cursorDirectory: where the cursor file is kept.
    ///   - onGap: called on the forwarder's thread, once per range of alerts
    ///     the source dropped before they were forwarded.
    ///   - startingAfter: where a forwarder without a cursor of this epoch
    ///     starts: after this sequence, stored as its cursor at once, so
    ///     that anything the source drops from then on unforwarded counts
    ///     as a gap, even across a restart before the first ack. nil: at the
    ///     source's first record, and what it no longer has is not counted
    ///     (it was gone before forwarding began).
    public init(
        configuration: ForwarderConfiguration,
        source: any ForwardingSource,
        epoch: String,
        cursorDirectory: OpenedDirectory,
        logger: Logger,
        startingAfter: UInt64? = nil,
        onGap: @escaping @Sendable (ForwardingGap) -> Void
    ) throws {
        precondition(epoch.utf8.count == 16 && epoch.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70) },
                     "the epoch is 16 hex digits")
        precondition(configuration.window > 0, "a window of at least one publish")
        self.configuration = configuration
        self.source = source
        self.epoch = epoch
        self.logger = logger
        self.onGap = onGap
        cursorFile = CursorFile(directory: cursorDirectory, name: configuration.cursorFileName)
        subjects = SubjectCache(prefix: configuration.subjectPrefix + "." + configuration.hostName + ".")
        let stored = try cursorFile.load()
        var cursor = stored?.epoch == epoch ? stored!.sequence : 0
        if let stored, stored.epoch != epoch {
            logger.notice("forwarder cursor is of epoch \(stored.epoch), not \(epoch): starting at the journal's first alert")
        }
        var startsFresh = stored?.epoch != epoch
        if startsFresh, let startingAfter {
            cursor = startingAfter
            try cursorFile.store(.init(epoch: epoch, sequence: cursor))
            startsFresh = false
        }
        shared = ConditionLock(Shared(
            window: AckWindow(cursor: cursor),
            nextToRead: cursor + 1,
            gapReportedThrough: cursor,
            startsFresh: startsFresh
        ))
    }

    /// Starts the forwarder's thread; returns at once.
    public func start() throws(SystemError) {
        precondition(thread == nil, "started twice")
        shared.withLock { $0.state = .connecting }
        thread = try Threads.start { [self] in run() }.get()
    }

    /// Stops forwarding: waits up to a second for acks in flight, stores the
    /// cursor, closes the connection, joins the thread.
    public func stop() {
        guard let thread else { return }
        shared.withLock {
            $0.stopping = true
            $0.work = true
        }
        shared.signal()
        pthread_join(thread, nil)
        self.thread = nil
    }

    /// The publisher appended up to `lastSequence`. Takes a lock, never
    /// waits for the network.
    public func notify(lastSequence: UInt64) {
        let wake = shared.withLock { s -> Bool in
            guard lastSequence > s.lastNotified else { return false }
            s.lastNotified = lastSequence
            guard lastSequence >= s.nextToRead, !s.work else { return false }
            s.work = true
            return true
        }
        if wake { shared.signal() }
    }

    public var status: ForwarderStatus {
        shared.withLock { s in
            ForwarderStatus(
                state: s.state,
                server: s.server,
                acknowledgedSequence: s.window.cursor,
                unforwarded: s.lastNotified > s.window.cursor ? s.lastNotified - s.window.cursor : 0,
                lastError: s.lastError,
                droppedBeforeForwarding: s.droppedBeforeForwarding
            )
        }
    }

    // MARK: libnats' threads

    func linkDisconnected() {
        let server = shared.withLock { s -> String? in
            defer {
                s.linkUp = false
                s.state = .connecting
                s.server = nil
            }
            s.lastError = "disconnected from \(s.server ?? "the server")"
            return s.server
        }
        logger.warning("NATS connection to \(server ?? "the server") lost; reconnecting")
    }

    func linkReconnected(server: String?) {
        shared.withLock { s in
            s.linkUp = true
            s.reconnected = true
            s.server = server
            s.work = true
        }
        shared.signal()
        logger.notice("NATS reconnected to \(server ?? "a server")")
    }

    func linkClosed() {
        shared.withLock { s in
            s.linkUp = false
            s.linkClosed = true
            s.state = .connecting
            s.server = nil
            s.work = true
        }
        shared.signal()
    }

    func publishAcknowledged(sequence: UInt64) {
        let limit = configuration.window
        let wake = shared.withLock { s -> Bool in
            guard s.window.acknowledged(sequence) else { return false }
            // Woken when half the window is free, not per ack: the thread
            // then reads and publishes a batch.
            guard !s.work, s.window.count <= limit / 2 else { return false }
            s.work = true
            return true
        }
        if wake { shared.signal() }
    }

    func publishFailed(sequence: UInt64, error: String) {
        let first = shared.withLock { s -> Bool in
            let first = s.resendReason == nil
            if first {
                s.resendReason = "publish of \(sequence) failed: \(error)"
                s.resendAfterFailure = true
                s.lastError = s.resendReason
            }
            s.work = true
            return first
        }
        shared.signal()
        if first { logger.warning("NATS publish of alert \(sequence) failed: \(error); re-sending from the cursor") }
    }

    // MARK: The forwarder's thread

    /// What the thread keeps to itself between iterations.
    private struct Local {
        var link: NATSLink?
        var streamReady = false
        /// No connection or stream attempt before this.
        var retryAt: ContinuousClock.Instant?
        var connectBackoff: Backoff
        var resendBackoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var persistedCursor: UInt64
        var lastPersist = ContinuousClock.now
        var lastLoggedError: String?
        /// The cursor when the last resend after a failure was scheduled.
        var cursorAtResend: UInt64 = .max
        /// Something was published on `link` (see `forward`).
        var publishedOnLink = false
    }

    private func run() {
        Threads.nameCurrentThread("nats-forward")
        var local = Local(
            connectBackoff: Backoff(initial: configuration.retryInitial, maximum: configuration.retryMaximum),
            persistedCursor: shared.withLock { $0.window.cursor }
        )
        while true {
            let events = shared.withLock { s in
                defer {
                    s.work = false
                    s.reconnected = false
                    s.linkClosed = false
                }
                return (stopping: s.stopping, reconnected: s.reconnected, closed: s.linkClosed)
            }
            if events.stopping { break }
            if events.closed {
                local.link?.close()
                local.link = nil
                local.streamReady = false
            }
            if events.reconnected {
                // Publishes in flight across the outage may never be acked;
                // the stream may be on another server: check it, send again.
                local.streamReady = false
                requestResend("reconnected", afterFailure: false)
            }
            establish(&local)
            if let link = local.link, local.streamReady, shared.withLock({ $0.linkUp }) {
                forward(link, &local)
            }
            persistCursor(&local, force: false)
            waitForWork(local)
        }
        drainAndClose(&local)
    }

    /// Connects and sets the stream up, when due.
    private func establish(_ local: inout Local) {
        let now = ContinuousClock.now
        guard local.link == nil || !local.streamReady, local.retryAt.map({ now >= $0 }) ?? true else { return }
        local.retryAt = nil
        do throws(NATSError) {
            if local.link == nil {
                local.link = try NATSLink.connect(configuration.connection, events: self, maxPending: configuration.window * 2)
                local.publishedOnLink = false
                shared.withLock { $0.linkUp = true }
            }
            guard shared.withLock({ $0.linkUp }) else { return }
            var created = false
            var code = jsErrCode(0)
            let status = cnats_ensure_stream(
                local.link!.jetStream, configuration.streamName, configuration.streamSubjects,
                Int64(configuration.replicas), Int64(configuration.duplicateWindow.milliseconds) * 1_000_000, &created, &code)
            if let error = NATSError.check(status, "stream \(configuration.streamName)") { throw error }
            local.streamReady = true
            local.connectBackoff.reset()
            local.lastLoggedError = nil
            let server = local.link!.connectedServer
            shared.withLock { s in
                s.state = .connected
                s.server = server
            }
            requestResend("connected", afterFailure: false)
            logger.info("NATS forwarder connected to \(server ?? "?"); stream \(configuration.streamName) \(created ? "created" : "found")")
        } catch {
            let delay = error.needsOperator ? local.connectBackoff.slowest() : local.connectBackoff.next()
            local.retryAt = now + delay
            shared.withLock { s in
                s.state = error.needsOperator ? .failed : .connecting
                s.lastError = error.description
            }
            // One line per distinct failure, not one per retry.
            if error.description != local.lastLoggedError {
                local.lastLoggedError = error.description
                logger.error("NATS forwarder: \(error.description); \(error.needsOperator ? "needs an operator, " : "")next attempt in \(delay.milliseconds) ms, backing off to \(configuration.retryMaximum)")
            }
        }
    }

    private func requestResend(_ reason: String, afterFailure: Bool) {
        shared.withLock { s in
            if s.resendReason == nil {
                s.resendReason = reason
                s.resendAfterFailure = afterFailure
            }
        }
    }

    /// Sends again from the cursor when asked to, then publishes what the
    /// window has room for.
    private func forward(_ link: NATSLink, _ local: inout Local) {
        let now = ContinuousClock.now
        let ackOverdue = shared.withLock { s in
            s.resendReason == nil && s.window.oldestPublishedAt.map { $0 + configuration.ackTimeout < now } == true
        }
        if ackOverdue {
            logger.warning("NATS forwarder: no ack for \(configuration.ackTimeout); re-sending from the cursor")
            requestResend("no ack for \(configuration.ackTimeout)", afterFailure: true)
        }
        if let pending = shared.withLock({ s in s.resendReason.map { ($0, s.resendAfterFailure) } }) {
            if pending.1, local.retryAt == nil {
                // Not in a tight loop against a server that refuses: wait
                // first, longer each time nothing was acked in between.
                let cursor = shared.withLock { $0.window.cursor }
                if cursor != local.cursorAtResend { local.resendBackoff.reset() }
                local.cursorAtResend = cursor
                local.retryAt = now + local.resendBackoff.next()
                return
            }
            if let retryAt = local.retryAt, now < retryAt { return }
            local.retryAt = nil
            // Outside our lock: libnats may be in the ack handler, which
            // takes it. Only after a publish on this link: libnats 3.4.1
            // dereferences its pending map, made by the first publish.
            if local.publishedOnLink { cnats_drop_pending(link.jetStream) }
            shared.withLock { s in
                s.window.abandonInFlight()
                s.nextToRead = s.window.cursor + 1
                s.sourceMayHaveMore = true
                s.resendReason = nil
                s.resendAfterFailure = false
            }
        }
        if publishBatches(link) { local.publishedOnLink = true }
    }

    /// Publishes while the window has room and the source has alerts;
    /// true when it published something.
    private func publishBatches(_ link: NATSLink) -> Bool {
        var published = false
        let limit = configuration.window
        while true {
            let (from, room, mayHaveMore, stopping) = shared.withLock { s in
                (s.nextToRead, limit - s.window.count, s.sourceMayHaveMore || s.lastNotified >= s.nextToRead, s.stopping || s.resendReason != nil)
            }
            guard room > 0, mayHaveMore, !stopping else { return published }
            let asked = min(room, 512)
            let batch: ForwardedBatch
            do {
                batch = try source.alerts(from: from, maxCount: asked)
            } catch {
                shared.withLock { $0.lastError = "reading alerts from \(from): \(error)" }
                logger.error("NATS forwarder: reading alerts from \(from) failed: \(error)")
                requestResend("source failed", afterFailure: true)
                return published
            }
            if let first = batch.alerts.first { reportGap(before: first.sequence, readFrom: from) }
            // Recorded before they go out, all in one lock: an ack may come
            // before its publish returns. A publish that fails below sends
            // everything after the cursor again, these included.
            let now = ContinuousClock.now
            shared.withLock { s in
                for alert in batch.alerts { s.window.published(alert.sequence, at: now) }
                if let last = batch.alerts.last { s.nextToRead = last.sequence + 1 }
            }
            let failed = batch.bytes.withUnsafeBytes { bytes -> Bool in
                for alert in batch.alerts {
                    let subject = subjects.subject(forSeverity: alert.severity)
                    published = true
                    let body = UnsafeRawBufferPointer(rebasing: bytes[alert.frame])
                    let status = cnats_publish_alert(
                        link.jetStream, subject, body.baseAddress, Int32(body.count), epoch, alert.sequence, configuration.hostName)
                    if let error = NATSError.check(status, "publish alert \(alert.sequence)") {
                        publishFailed(sequence: alert.sequence, error: error.text)
                        return true
                    }
                }
                return false
            }
            if failed { return published }
            shared.withLock { s in
                if batch.alerts.count < asked { s.sourceMayHaveMore = false }
            }
            if batch.alerts.count < asked { return published }
        }
    }

    /// Reports sequences before `first` the source no longer had, once.
    private func reportGap(before first: UInt64, readFrom from: UInt64) {
        let gap = shared.withLock { s -> ForwardingGap? in
            defer { s.gapReportedThrough = max(s.gapReportedThrough, first - 1) }
            if s.startsFresh {
                s.startsFresh = false
                return nil
            }
            let start = max(from, s.gapReportedThrough + 1)
            guard first > start else { return nil }
            let gap = ForwardingGap(first: start, last: first - 1)
            s.droppedBeforeForwarding += gap.count
            s.lastError = "alerts \(gap.first)...\(gap.last) dropped by retention before they were forwarded"
            return gap
        }
        guard let gap else { return }
        logger.critical("NATS forwarder: \(gap.count) alerts (\(gap.first)...\(gap.last)) were dropped by retention before they were forwarded")
        onGap(gap)
    }

    private func persistCursor(_ local: inout Local, force: Bool) {
        let now = ContinuousClock.now
        let cursor = shared.withLock { $0.window.cursor }
        guard cursor != local.persistedCursor, force || now >= local.lastPersist + configuration.cursorSyncInterval else { return }
        do {
            try cursorFile.store(.init(epoch: epoch, sequence: cursor))
            local.persistedCursor = cursor
            local.lastPersist = now
        } catch {
            local.lastPersist = now
            shared.withLock { $0.lastError = "storing the forwarder cursor: \(error)" }
            logger.error("NATS forwarder: storing the cursor failed: \(error)")
        }
    }

    /// Sleeps until another thread has work for this one or the nearest
    /// deadline: a retry, the cursor's next write, an ack's timeout.
    private func waitForWork(_ local: Local) {
        let (inFlight, cursor, oldest) = shared.withLock { ($0.window.count, $0.window.cursor, $0.window.oldestPublishedAt) }
        var deadlines: [ContinuousClock.Instant] = []
        if let retryAt = local.retryAt { deadlines.append(retryAt) }
        if inFlight > 0 || cursor != local.persistedCursor { deadlines.append(local.lastPersist + configuration.cursorSyncInterval) }
        if let oldest { deadlines.append(oldest + configuration.ackTimeout) }
        shared.wait(until: deadlines.min(), for: { $0.work || $0.stopping }, then: { _ in })
    }

    private func drainAndClose(_ local: inout Local) {
        if local.link != nil, local.streamReady {
            shared.wait(until: .now + .seconds(1), for: { $0.window.count == 0 || !$0.linkUp }, then: { _ in })
        }
        local.link?.close()
        local.link = nil
        persistCursor(&local, force: true)
        shared.withLock { s in
            s.state = .disabled
            s.server = nil
            s.linkUp = false
        }
    }
}
