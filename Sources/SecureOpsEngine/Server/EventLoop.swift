import CSecureOpsSystem
import Dispatch
import Glibc
import Logging
import SecureOpsJournal
import SecureOpsSystem

/// The loop thread's world: the listeners, every connection, the broadcast
/// ring, and the IO backend that talks to the kernel for them. Nothing here
/// is touched by any other thread; other threads reach the loop only
/// through `Inbox`.
///
/// One turn of the loop:
///  1. take what other threads posted (offloaded replies, published frames);
///  2. queue sends: one per connection with anything to send and no send
///     in flight, gathering its replies and, for a subscriber, the
///     broadcast frames from its cursor to the head;
///  3. re-arm receives that ended;
///  4. let the backend issue everything and wait for events (with io_uring,
///     one system call);
///  5. handle every event (`IOEvents`), then the deadlines.
///
/// The parts: `ConnectionTable` (slots and generations), `Subscribers`,
/// each connection's `ReplyQueue`, `Timers`; the files beside this one
/// hold what the loop does with them (reading, replies, sending, closing,
/// housekeeping).
final class EventLoop: IOEvents {
    let configuration: EngineConfiguration
    @exclusivity(unchecked) private(set) var limits: EngineLimits
    let logger: Logger
    let counters: EngineCounters
    let inbox: Inbox
    let backend: IOBackend
    let broadcast: BroadcastRing
    @exclusivity(unchecked) var dispatcher: FrameDispatcher!

    /// By index; nil once closed (at shutdown).
    @exclusivity(unchecked) var listeners: [Listener?]
    @exclusivity(unchecked) var acceptStates: [KernelOperation]
    @exclusivity(unchecked) private(set) var connectionCapacity: Int
    @exclusivity(unchecked) var connections = ConnectionTable()
    @exclusivity(unchecked) var subscribers = Subscribers()
    @exclusivity(unchecked) var timers = Timers()

    @exclusivity(unchecked) var flushQueue: [Connection] = []
    @exclusivity(unchecked) var receiveRearmQueue: [Connection] = []
    /// Connections whose receive ran out of shared buffers, oldest first.
    @exclusivity(unchecked) var starvedReceives = HeadQueue<Connection>()
    @exclusivity(unchecked) var broadcastAdvanced = false
    let outputBuffers = OutputBufferPool()
    /// Keeps as many operations as there can be sends in flight (one per
    /// connection): with fewer, a fan-out to more subscribers than the pool
    /// held freed and re-allocated operations on every sweep.
    let sendOperations: SendOperationPool
    @exclusivity(unchecked) var scratch = JSONWriter(capacity: 1024)
    let offloadQueue: DispatchQueue

    @exclusivity(unchecked) private(set) var now: UInt64
    @exclusivity(unchecked) private var reportedOverflows = 0
    @exclusivity(unchecked) var peerLogs = WindowedRateLimiter<PeerLogKey>(perWindow: 10, windowSeconds: 60)

    enum RunState { case running, draining(deadline: UInt64), stopped }
    @exclusivity(unchecked) private(set) var runState = RunState.running

    // Scratch arrays swapped with the inbox's, so taking its contents does
    // not allocate.
    @exclusivity(unchecked) private var takenMessages: [InboxMessage] = []
    @exclusivity(unchecked) private var takenFrameBytes: [UInt8] = []
    @exclusivity(unchecked) private var takenFrameLengths: [Int] = []

    /// Writes every broadcast frame to the journal; nil without one.
    let journalWrites: JournalWrites?
    /// Replies waiting for the journal, in sequence order
    /// (`Reply.respondWhenPersisted`).
    @exclusivity(unchecked) var persistenceWaiters = HeadQueue<PersistenceWaiter>()
    @exclusivity(unchecked) var journalHealth = JournalHealth.healthy
    /// The newest frame the journal has dealt with (written, or failed to
    /// be): with a journal, subscribers get frames only up to here.
    @exclusivity(unchecked) var journaledThrough: UInt64 = 0

    /// The end (exclusive) of the frames that may go out to subscribers and
    /// `alerts`: all of the ring without a journal; with one, only what the
    /// journal has dealt with, so no subscriber ever sees a frame a crash
    /// could take back and a restarted engine number again (a consumer sees
    /// what is committed, as Kafka's high watermark has it).
    @inline(__always)
    var sendableEnd: UInt64 {
        journalWrites == nil ? broadcast.nextSequence : min(broadcast.nextSequence, journaledThrough + 1)
    }

    init(
        configuration: EngineConfiguration, listeners: [Listener], backend: IOBackend, inbox: Inbox,
        counters: EngineCounters, logger: Logger, connectionCapacity: Int, journalWrites: JournalWrites? = nil
    ) {
        self.configuration = configuration
        self.journalWrites = journalWrites
        limits = configuration.limits
        self.logger = logger
        self.counters = counters
        self.inbox = inbox
        self.backend = backend
        self.listeners = listeners
        acceptStates = Array(repeating: .idle, count: listeners.count)
        self.connectionCapacity = connectionCapacity
        sendOperations = SendOperationPool(limit: connectionCapacity)
        let retained = Self.newestJournalFrames(configuration, logger: logger)
        broadcast = BroadcastRing(
            maxFrames: limits.retainedFrames, maxBytes: limits.retainedBytes,
            chunkSize: max(256 << 10, 4 * limits.maxBytesPerSend),
            nextSequence: retained.first?.sequence ?? configuration.journal?.nextSequence ?? 1)
        let ring = broadcast
        for record in retained { record.payload.withUnsafeBytes { ring.append($0) } }
        journaledThrough = ring.nextSequence - 1
        if let journal = configuration.journal {
            counters.journal.withLock { $0 = JournalStatus(syncPolicy: journal.configuration.syncPolicy, writer: journalWrites?.kind ?? .thread, storage: journal.statistics) }
            counters.broadcastRetained.store(broadcast.count, ordering: .relaxed)
            counters.broadcastRetainedBytes.store(broadcast.retainedBytes, ordering: .relaxed)
            counters.lastSequence.store(broadcast.lastSequence, ordering: .relaxed)
        }
        offloadQueue = DispatchQueue(label: "secureops.offload", attributes: .concurrent)
        now = SystemClock.monotonicNanoseconds()
        counters.connectionCapacity.store(connectionCapacity, ordering: .relaxed)
        logger.info("event loop ready", metadata: [
            "ioBackend": "\(backend.description)", "connectionCapacity": "\(connectionCapacity)",
        ])
    }

    // MARK: - Running

    func run() {
        inbox.bindToCurrentThread()
        for index in listeners.indices { armAccept(index) }
        // At most 100 ms between turns, less when a timer is due sooner.
        while turn(timeoutNanoseconds: min(timers.waitBudget(now: now, maximum: 100_000_000), journalWaitBudget)) {}
        tearDown()
    }

    /// One turn; false once a shutdown has finished draining.
    @discardableResult
    func turn(timeoutNanoseconds: Int64) -> Bool {
        takeInbox()
        if broadcastAdvanced { scheduleSubscriberSends() }
        flushQueuedConnections()
        rearmReceives()
        if case .draining = runState, connections.count == 0 { return false }
        if case .ring(let writer) = journalWrites { writer.issue(now: now) }
        backend.wait(timeoutNanoseconds: timeoutNanoseconds, events: self)
        let overflows = backend.overflowCount
        if overflows != reportedOverflows {
            reportedOverflows = overflows
            counters.completionQueueOverflows.store(overflows, ordering: .relaxed)
        }
        if timers.housekeepingDue(now) { housekeeping() }
        return true
    }

    // MARK: - Inbox

    private func takeInbox() {
        inbox.take(messages: &takenMessages, frameBytes: &takenFrameBytes, frameLengths: &takenFrameLengths)
        appendTakenFrames()
        guard !takenMessages.isEmpty else { return }
        for message in takenMessages {
            switch message {
            case .offloadFinished(let id, let requestID, let outcome):
                offloadFinished(id, requestID: requestID, outcome: outcome)
            case .updateLimits(let newLimits):
                apply(newLimits)
            case .shutdown:
                beginShutdown()
            case .reviewConnections:
                reviewConnections()
            case .journalProgress(let progress):
                journalProgressed(progress)
            case .journalMaintained(let outcome):
                journalMaintained(outcome)
            case .journalRead(let id, let from, let outcome):
                journalRead(id, from: from, outcome: outcome)
            }
        }
        takenMessages.removeAll(keepingCapacity: true)
    }

    /// Moves frames published since the last turn (from any thread,
    /// including handlers on this one) into the broadcast ring.
    func absorbPublishedFrames() {
        inbox.takeFrames(frameBytes: &takenFrameBytes, frameLengths: &takenFrameLengths)
        appendTakenFrames()
    }

    private func appendTakenFrames() {
        guard !takenFrameLengths.isEmpty else { return }
        if let journalWrites {
            journalWrites.submit(JournalBatch(
                firstSequence: broadcast.nextSequence, timestampMilliseconds: SystemClock.realtimeMilliseconds(),
                payloads: takenFrameBytes, lengths: takenFrameLengths))
        }
        takenFrameBytes.withUnsafeBytes { bytes in
            var offset = 0
            for length in takenFrameLengths {
                broadcast.append(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length]))
                offset += length
            }
        }
        counters.broadcastPublished.add(takenFrameLengths.count, ordering: .relaxed)
        counters.broadcastRetained.store(broadcast.count, ordering: .relaxed)
        counters.broadcastRetainedBytes.store(broadcast.retainedBytes, ordering: .relaxed)
        counters.lastSequence.store(broadcast.lastSequence, ordering: .relaxed)
        takenFrameBytes.removeAll(keepingCapacity: true)
        takenFrameLengths.removeAll(keepingCapacity: true)
        // With a journal, subscribers get the frames once it has them
        // (`journalProgressed`).
        if journalWrites == nil { broadcastAdvanced = true }
    }

    private func apply(_ newLimits: EngineLimits) {
        limits = newLimits
        if let maximum = newLimits.maxConnections {
            connectionCapacity = maximum
            counters.connectionCapacity.store(maximum, ordering: .relaxed)
        }
        broadcast.setLimits(maxFrames: newLimits.retainedFrames, maxBytes: newLimits.retainedBytes)
        counters.broadcastRetained.store(broadcast.count, ordering: .relaxed)
        counters.broadcastRetainedBytes.store(broadcast.retainedBytes, ordering: .relaxed)
        logger.info("limits updated", metadata: [
            "maxFrameBytes": "\(newLimits.maxFrameBytes)", "retainedFrames": "\(newLimits.retainedFrames)",
            "onLag": "\(newLimits.onLag.rawValue)",
        ])
    }

    func waitReturned() {
        now = SystemClock.monotonicNanoseconds()
    }

    // MARK: - Accepting

    func armAccept(_ listener: Int) {
        guard case .running = runState, let socket = listeners[listener], acceptStates[listener] == .idle,
              !timers.isRetryingAccept(listener) else { return }
        backend.armAccept(listener: listener, fd: socket.fd)
        acceptStates[listener] = .armed
    }

    func accepted(_ fd: Int32, listener: Int) {
        if case .running = runState, let socket = listeners[listener] {
            admit(fd: fd, from: socket)
        } else {
            Glibc.close(fd)
        }
    }

    func acceptFailed(listener: Int, errno code: Int32) {
        counters.acceptErrors.add(1, ordering: .relaxed)
        // Out of descriptors or memory: leave waiting clients in the
        // backlog and try again shortly instead of spinning.
        guard code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM else {
            logger.warning("accept failed: \(String(cString: strerror(code)))")
            return
        }
        if timers.retryAccept(listener, at: now + Timers.acceptRetryDelay) {
            logger.warning("accept failed: \(String(cString: strerror(code))); retrying in 100 ms (raise RLIMIT_NOFILE for more connections)")
        }
        if acceptStates[listener] == .armed {
            backend.cancelAccept(listener: listener)
            acceptStates[listener] = .cancelling
        }
    }

    func acceptEnded(listener: Int) {
        acceptStates[listener] = .idle
        armAccept(listener)
    }

    /// A new connection: who it is (the kernel's credentials for a Unix
    /// socket, the address for TCP), a slot, then the handler's word.
    private func admit(fd: Int32, from listener: Listener) {
        let peer: ConnectionInfo.Peer
        switch listener.peer(of: fd) {
        case .success(let identified):
            peer = identified
        case .failure(let error):
            logger.warning("\(error); closing the connection")
            Glibc.close(fd)
            return
        }
        guard connections.count < connectionCapacity else {
            counters.connectionsRefused.add(1, ordering: .relaxed)
            logger.debug("refusing connection: at the connection limit", metadata: ["limit": "\(connectionCapacity)", "peer": "\(peer)"])
            scratch.reset()
            dispatcher.writeError("server is at its connection limit (\(connectionCapacity)); try again later", into: &scratch)
            scratch.bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) }
            discardPendingInput(fd)
            Glibc.close(fd)
            return
        }
        let maxFrameBytes = limits.maxFrameBytes
        let connection = connections.open { id in
            Connection(id: id, fd: fd, peer: peer, listener: listener.address, maxFrameBytes: maxFrameBytes)
        }
        counters.connectionsAccepted.add(1, ordering: .relaxed)
        counters.connections.store(connections.count, ordering: .relaxed)
        logger.trace("connection accepted", metadata: ["connection": "\(connection.id)", "fd": "\(fd)", "peer": "\(peer)"])
        switch dispatcher.admit(connection.info) {
        case .admit:
            if case .running = runState {
                armReceive(connection)
            } else {
                // Connected before shutdown began: answer what it sent.
                connection.drainInputWhenReceiveEnds = true
                beginDrain(connection, reason: .shutdown)
            }
        case .refuse(let message):
            refuse(connection, message: message)
        }
    }

    /// Asks the handler again, for every open connection, whether it may
    /// stay (after a policy change, say).
    private func reviewConnections() {
        var closed = 0
        var ended = 0
        for connection in connections.all where connection.state == .open {
            let subscribed = connection.isSubscribed || connection.replies.hasPendingSubscription
            switch dispatcher.review(connection.info, isSubscribed: subscribed) {
            case .keep:
                break
            case .endSubscription(let message):
                guard subscribed else { break }
                endSubscription(connection, message: message)
                ended += 1
            case .close(let message):
                removeSubscriber(connection)
                closeWithError(message, connection, reason: .refused)
                closed += 1
            }
        }
        if closed > 0 || ended > 0 {
            logger.notice("reviewed connections", metadata: ["closed": "\(closed)", "subscriptionsEnded": "\(ended)"])
        }
    }

    private func refuse(_ connection: Connection, message: String) {
        counters.connectionsRefused.add(1, ordering: .relaxed)
        connection.readState = .stopped
        scratch.reset()
        dispatcher.writeError(message, into: &scratch)
        scratch.bytes.withUnsafeBytes { appendOutput($0, to: connection) }
        beginDrain(connection, reason: .refused)
    }

    // MARK: - Shutdown

    private func beginShutdown() {
        guard case .running = runState else { return }
        runState = .draining(deadline: now + configuration.shutdownGracePeriod.nanoseconds)
        logger.info("shutting down: no new connections; flushing replies", metadata: ["connections": "\(connections.count)"])
        for index in listeners.indices {
            if acceptStates[index] == .armed {
                backend.cancelAccept(listener: index)
                acceptStates[index] = .cancelling
            }
            guard let listener = listeners[index] else { continue }
            // Clients that completed connect() before the signal sit in the
            // backlog; they sent their requests before shutdown, so serve them.
            while true {
                let fd = cs_accept(listener.fd)
                guard fd >= 0 else { break }
                admit(fd: fd, from: listener)
            }
            listener.close(logger: logger)
            listeners[index] = nil
        }
        for connection in connections.all where connection.state == .open {
            connection.drainInputWhenReceiveEnds = true
            beginDrain(connection, reason: .shutdown)
        }
        timers.housekeepNow()
    }

    /// Cancels what is still armed and reaps it, so nothing the kernel
    /// holds outlives the memory it points at.
    private func tearDown() {
        runState = .stopped
        let leftovers = inbox.close()
        if !leftovers.isEmpty {
            logger.debug("dropping \(leftovers.count) inbox messages at shutdown")
        }
        // Frames published up to the close go to the journal too; the
        // writer writes and syncs everything before it stops.
        absorbPublishedFrames()
        finishJournal()
        backend.shutDown(events: self)
        for index in listeners.indices {
            listeners[index]?.close(logger: logger)
            listeners[index] = nil
        }
        for (key, suppressed) in peerLogs.drain() { summarizePeerLogs(key, suppressed) }
        logger.info("engine stopped")
    }
}

extension Duration {
    /// Whole nanoseconds, saturating; negative durations count as zero.
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let whole = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        return whole.overflow ? .max : whole.partialValue &+ UInt64(attoseconds / 1_000_000_000)
    }
}
