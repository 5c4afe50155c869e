import CURing
import Dispatch
import Glibc
import Logging
import SecureOpsSystem

/// The loop thread's world: one io_uring ring, the listening socket, every
/// connection, the broadcast ring. Nothing here is touched by any other
/// thread; other threads reach the loop only through `Inbox`.
///
/// One turn of the loop:
///  1. take what other threads posted (offloaded replies, published frames);
///  2. queue sends: one `sendmsg` per connection with anything to send and
///     no send in flight, gathering its replies and, for a subscriber, the
///     broadcast frames from its cursor to the head;
///  3. re-arm receives that ended;
///  4. submit everything and wait for completions (one system call);
///  5. handle every completion, returning receive buffers at once.
final class EventLoop {
    let configuration: EngineConfiguration
    @exclusivity(unchecked) private(set) var limits: EngineLimits
    let logger: Logger
    let counters: EngineCounters
    let inbox: Inbox
    let ring: IOURing
    let receiveBuffers: ProvidedBufferRing
    let broadcast: BroadcastRing
    @exclusivity(unchecked) var dispatcher: FrameDispatcher!

    @exclusivity(unchecked) private var listener: UnixListener?
    @exclusivity(unchecked) private(set) var connectionCapacity: Int
    @exclusivity(unchecked) var connections: [Connection?] = []
    @exclusivity(unchecked) private var generations: [UInt32] = []
    @exclusivity(unchecked) private var freeSlots: [UInt32] = []
    @exclusivity(unchecked) private var openConnections = 0
    @exclusivity(unchecked) private var connectionsPerUID: [UInt32: Int] = [:]

    @exclusivity(unchecked) var subscribers: [Connection] = []
    @exclusivity(unchecked) var flushQueue: [Connection] = []
    @exclusivity(unchecked) var receiveRearmQueue: [Connection] = []
    /// Connections whose receive ended with -ENOBUFS, oldest first, from
    /// `starvedHead` on.
    @exclusivity(unchecked) var starvedReceives: [Connection] = []
    @exclusivity(unchecked) var starvedHead = 0
    @exclusivity(unchecked) var broadcastAdvanced = false
    let outputBuffers = OutputBufferPool()
    /// Keeps as many operations as there can be sends in flight (one per
    /// connection): with fewer, a fan-out to more subscribers than the pool
    /// held freed and re-allocated operations on every sweep.
    let sendOperations: SendOperationPool
    @exclusivity(unchecked) var scratch = JSONWriter(capacity: 1024)
    let offloadQueue: DispatchQueue

    @exclusivity(unchecked) private var acceptArmed = false
    @exclusivity(unchecked) private var acceptRetryAt: UInt64 = 0
    @exclusivity(unchecked) private var wakeArmed = false
    private let wakeBuffer: UnsafeMutablePointer<UInt64>
    @exclusivity(unchecked) private(set) var now: UInt64
    @exclusivity(unchecked) private var nextHousekeeping: UInt64 = 0
    @exclusivity(unchecked) private var reportedOverflows = 0
    @exclusivity(unchecked) private var peerLogs = WindowedRateLimiter<PeerLogKey>(perWindow: 10, windowSeconds: 60)

    enum RunState { case running, draining(deadline: UInt64), stopped }
    @exclusivity(unchecked) private(set) var runState = RunState.running

    // Scratch arrays swapped with the inbox's, so taking its contents does
    // not allocate.
    @exclusivity(unchecked) private var takenMessages: [InboxMessage] = []
    @exclusivity(unchecked) private var takenFrameBytes: [UInt8] = []
    @exclusivity(unchecked) private var takenFrameLengths: [Int] = []

    init(
        configuration: EngineConfiguration, listener: UnixListener, inbox: Inbox,
        counters: EngineCounters, logger: Logger, connectionCapacity: Int
    ) throws(EngineError) {
        self.configuration = configuration
        limits = configuration.limits
        self.logger = logger
        self.counters = counters
        self.inbox = inbox
        self.listener = listener
        self.connectionCapacity = connectionCapacity
        sendOperations = SendOperationPool(limit: connectionCapacity)
        ring = try IOURing(
            entries: configuration.submissionQueueEntries,
            completionEntries: configuration.completionQueueEntries, logger: logger)
        receiveBuffers = try ProvidedBufferRing(
            ring: ring, group: 0, count: configuration.receiveBufferCount,
            bufferSize: configuration.receiveBufferSize)
        broadcast = BroadcastRing(
            maxFrames: limits.retainedFrames, maxBytes: limits.retainedBytes,
            chunkSize: max(256 << 10, 4 * limits.maxBytesPerSend))
        offloadQueue = DispatchQueue(label: "secureops.offload", attributes: .concurrent)
        wakeBuffer = .allocate(capacity: 1)
        now = Clock.monotonicNanoseconds()
        counters.connectionCapacity.store(connectionCapacity, ordering: .relaxed)
        let setup = ring.setup
        logger.info(
            "io_uring ready",
            metadata: [
                "flags": "\(setup.name)", "sq": "\(setup.submissionEntries)", "cq": "\(setup.completionEntries)",
                "receiveBuffers": "\(configuration.receiveBufferCount)x\(configuration.receiveBufferSize)",
                "connectionCapacity": "\(connectionCapacity)",
            ])
    }

    deinit {
        wakeBuffer.deallocate()
    }

    var ringSetup: RingSetup { ring.setup }

    // MARK: - Running

    func run() {
        inbox.bindToCurrentThread()
        armAccept()
        armWake()
        while true {
            takeInbox()
            if broadcastAdvanced { scheduleSubscriberSends() }
            flushQueuedConnections()
            rearmReceives()
            if case .draining = runState, openConnections == 0 {
                break
            }
            let rc = ring.submitAndWait(timeoutNanoseconds: 100_000_000)
            if rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN {
                logger.error("io_uring_submit_and_wait failed: \(String(cString: strerror(-rc)))")
            }
            now = Clock.monotonicNanoseconds()
            _ = ring.drainCompletions { userData, result, flags in
                handleCompletion(userData: userData, result: result, flags: flags)
            }
            receiveBuffers.publishReturns()
            let overflows = ring.overflowCount
            if overflows != reportedOverflows {
                reportedOverflows = overflows
                counters.completionQueueOverflows.store(overflows, ordering: .relaxed)
            }
            if now >= nextHousekeeping { housekeeping() }
        }
        tearDown()
    }

    @inline(__always)
    private func handleCompletion(userData: UInt64, result: Int32, flags: UInt32) {
        guard let tag = OperationTag(userData: userData) else { return }
        switch tag.kind {
        case .receive:
            if let connection = lookup(tag) {
                onReceive(connection, result: result, flags: flags)
            } else if flags & CU_CQE_F_BUFFER != 0 {
                receiveBuffers.recycle(id: UInt16(truncatingIfNeeded: flags >> CU_CQE_BUFFER_SHIFT))
            }
        case .send:
            if let connection = lookup(tag) { onSendCompleted(connection, result: result) }
        case .accept:
            onAccept(result: result, flags: flags)
        case .wake:
            wakeArmed = false
            if case .stopped = runState {} else { armWake() }
        case .hangupPoll:
            if let connection = lookup(tag) { onHangup(connection, result: result) }
        case .cancel:
            break
        }
    }

    @inline(__always)
    func lookup(_ tag: OperationTag) -> Connection? {
        let slot = Int(tag.slot)
        guard slot < connections.count, let connection = connections[slot],
              connection.generation == tag.generation else { return nil }
        return connection
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
        broadcastAdvanced = true
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
            "maxFrameBytes": "\(newLimits.maxFrameBytes)",
            "maxConnectionsPerUID": "\(newLimits.maxConnectionsPerUID.map(String.init) ?? "none")",
            "retainedFrames": "\(newLimits.retainedFrames)", "onLag": "\(newLimits.onLag.rawValue)",
        ])
    }

    // MARK: - Accepting

    private func armAccept() {
        guard let listener, !acceptArmed else { return }
        let sqe = ring.nextSubmission()
        io_uring_prep_multishot_accept(sqe, listener.fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        sqe.pointee.user_data = OperationTag(kind: .accept).userData
        acceptArmed = true
    }

    private func onAccept(result: Int32, flags: UInt32) {
        let more = flags & CU_CQE_F_MORE != 0
        if !more { acceptArmed = false }
        if result >= 0 {
            if case .running = runState {
                accepted(fd: result)
            } else {
                Glibc.close(result)
            }
        } else if result != -ECANCELED {
            counters.acceptErrors.add(1, ordering: .relaxed)
            let code = -result
            // Out of descriptors or memory: leave waiting clients in the
            // backlog and try again shortly instead of spinning.
            if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM {
                if acceptRetryAt == 0 {
                    logger.warning("accept failed: \(String(cString: strerror(code))); retrying in 100 ms (raise the descriptor limit: ulimit -n, or LimitNOFILE= in the systemd unit)")
                }
                acceptRetryAt = now + 100_000_000
                if more { cancel(OperationTag(kind: .accept).userData) }
                return
            }
            logger.warning("accept failed: \(String(cString: strerror(code)))")
        }
        if !acceptArmed, acceptRetryAt == 0, case .running = runState { armAccept() }
    }

    private func accepted(fd: Int32) {
        let peer: PeerCred
        switch PeerCred.of(socket: fd) {
        case .success(let credentials):
            peer = credentials
        case .failure(let error):
            logger.warning("\(error); closing the connection")
            Glibc.close(fd)
            return
        }
        let uid = peer.uid
        let groups = PeerCred.groups(ofSocket: fd)
        let isPrivileged = limits.privilegedUIDs.contains(uid)
        let available = isPrivileged ? connectionCapacity : connectionCapacity - reservedSlots
        guard openConnections < available else {
            counters.connectionsRefused.add(1, ordering: .relaxed)
            logger.debug("refusing connection: at the connection limit", metadata: ["limit": "\(available)", "peer": "\(peer)"])
            scratch.reset()
            let message = available < connectionCapacity
                ? "server is at its connection limit (\(available); the other \(connectionCapacity - available) are reserved); try again later"
                : "server is at its connection limit (\(connectionCapacity)); try again later"
            dispatcher.writeError(message, into: &scratch)
            scratch.bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL)) }
            discardPendingInput(fd)
            Glibc.close(fd)
            return
        }
        let slot: UInt32
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = UInt32(connections.count)
            connections.append(nil)
            generations.append(1)
        }
        let connection = Connection(
            slot: slot, generation: generations[Int(slot)], fd: fd, peer: peer, groups: groups, maxFrameBytes: limits.maxFrameBytes)
        connections[Int(slot)] = connection
        openConnections += 1
        connectionsPerUID[uid, default: 0] += 1
        counters.connectionsAccepted.add(1, ordering: .relaxed)
        logger.trace("connection accepted", metadata: ["connection": "\(connection.id)", "fd": "\(fd)", "peer": "\(peer)"])
        counters.connections.store(openConnections, ordering: .relaxed)

        if let cap = limits.maxConnectionsPerUID, connectionsPerUID[uid, default: 0] > cap, !isPrivileged {
            refuse(connection, message: "too many connections for uid \(uid) (limit \(cap)); close some and retry")
            return
        }
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
    /// stay (after a policy change, say); those refused now get the error
    /// and are closed once it has been sent.
    private func reviewConnections() {
        var closed = 0
        var ended = 0
        for case let connection? in connections where connection.state == .open {
            let subscribed = connection.isSubscribed || connection.orderedReplies.contains { $0.subscribeAt != nil }
            switch dispatcher.review(connection.info, isSubscribed: subscribed) {
            case .keep:
                break
            case .endSubscription(let message):
                guard subscribed else { break }
                endSubscription(connection, message: message)
                ended += 1
            case .close(let message):
                if connection.isSubscribed { removeSubscriber(connection) }
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

    /// Slots only privileged peers may take: as configured, at most half.
    private var reservedSlots: Int {
        min(max(0, limits.reservedConnections), connectionCapacity / 2)
    }

    // MARK: - Wake-ups

    private func armWake() {
        guard !wakeArmed else { return }
        let sqe = ring.nextSubmission()
        io_uring_prep_read(sqe, inbox.eventFD, wakeBuffer, 8, 0)
        sqe.pointee.user_data = OperationTag(kind: .wake).userData
        wakeArmed = true
    }

    // MARK: - Cancelling

    func cancel(_ userData: UInt64) {
        let sqe = ring.nextSubmission()
        io_uring_prep_cancel64(sqe, userData, 0)
        sqe.pointee.user_data = OperationTag(kind: .cancel).userData
        sqe.pointee.flags |= CU_IOSQE_CQE_SKIP_SUCCESS
    }

    func cancelAll(fd: Int32) {
        let sqe = ring.nextSubmission()
        io_uring_prep_cancel_fd(sqe, fd, CU_ASYNC_CANCEL_ALL)
        sqe.pointee.user_data = OperationTag(kind: .cancel).userData
        sqe.pointee.flags |= CU_IOSQE_CQE_SKIP_SUCCESS
    }

    // MARK: - Slots

    func releaseSlot(_ connection: Connection) {
        let slot = Int(connection.slot)
        connections[slot] = nil
        generations[slot] = (generations[slot] &+ 1) & 0xFF_FFFF
        if generations[slot] == 0 { generations[slot] = 1 }
        freeSlots.append(connection.slot)
        openConnections -= 1
        let uid = connection.peer.uid
        if let count = connectionsPerUID[uid] {
            if count <= 1 { connectionsPerUID[uid] = nil } else { connectionsPerUID[uid] = count - 1 }
        }
        counters.connections.store(openConnections, ordering: .relaxed)
    }

    // MARK: - Housekeeping

    /// Runs a few times a second: retries a failed accept, closes
    /// connections whose send is stuck, enforces the shutdown deadline.
    private func housekeeping() {
        nextHousekeeping = now + 250_000_000
        for (key, suppressed) in peerLogs.expire(now: now) { summarizePeerLogs(key, suppressed) }
        if acceptRetryAt != 0 && now >= acceptRetryAt {
            acceptRetryAt = 0
            if case .running = runState { armAccept() }
        }
        let stuckAfter = limits.stuckSendTimeout.nanoseconds
        let frameDeadline = limits.frameTimeout.nanoseconds
        var forceClose = false
        if case .draining(let deadline) = runState, now >= deadline { forceClose = true }
        for case let connection? in connections where connection.state == .open || connection.state == .draining {
            if forceClose {
                connection.closeReason = .shutdown
                beginClose(connection)
            } else if connection.frameStartedAt != 0 && now - connection.frameStartedAt > frameDeadline
                        && connection.state == .open {
                // Slowloris defence: a frame must arrive whole within the
                // deadline of its first byte, however slowly bytes trickle.
                counters.frameTimeouts.add(1, ordering: .relaxed)
                connection.frameStartedAt = 0
                logAboutPeer(.frameTimeout, connection) {
                    logger.notice("closing connection: frame not completed in time", metadata: [
                        "connection": "\(connection.id)", "peer": "\(connection.peer)", "timeout": "\(limits.frameTimeout)",
                    ])
                }
                closeWithError(
                    "frame not completed within \(limits.frameTimeout); closing the connection",
                    connection, reason: .frameTimeout)
            } else if connection.send != nil && now - connection.sendStartedAt > stuckAfter {
                counters.slowDisconnects.add(1, ordering: .relaxed)
                logAboutPeer(.slowConsumer, connection) {
                    logger.warning("closing slow consumer: a send did not finish within \(limits.stuckSendTimeout)", metadata: [
                        "connection": "\(connection.id)", "peer": "\(connection.peer)",
                    ])
                }
                connection.closeReason = .stuckSend
                beginClose(connection)
            }
        }
    }

    // MARK: - Log lines peers cause

    /// What a peer's behaviour makes the engine log, each with its own
    /// budget per uid.
    enum PeerLogKind: String, Sendable {
        case lagged = "lag notices"
        case slowConsumer = "slow-consumer disconnects"
        case frameTimeout = "frame timeouts"
    }

    struct PeerLogKey: Hashable, Sendable {
        var kind: PeerLogKind
        var uid: UInt32
    }

    /// Runs `emit` (a log line about `connection`) unless its uid already
    /// caused 10 of that kind this minute; those are counted and summarised
    /// when the minute is over, so a peer cannot flood the daemon's log.
    func logAboutPeer(_ kind: PeerLogKind, _ connection: Connection, _ emit: () -> Void) {
        let key = PeerLogKey(kind: kind, uid: connection.peer.uid)
        switch peerLogs.decide(key, now: now) {
        case .suppress:
            return
        case .allow(let suppressedBefore):
            if suppressedBefore > 0 { summarizePeerLogs(key, suppressedBefore) }
            emit()
        }
    }

    private func summarizePeerLogs(_ key: PeerLogKey, _ count: Int) {
        logger.notice("\(count) more \(key.kind.rawValue) for uid \(key.uid) were not logged one by one (at most \(peerLogs.limitDescription))")
    }

    // MARK: - Shutdown

    private func beginShutdown() {
        guard case .running = runState else { return }
        runState = .draining(deadline: now + configuration.shutdownGracePeriod.nanoseconds)
        logger.info("shutting down: no new connections; flushing replies", metadata: ["connections": "\(openConnections)"])
        if acceptArmed { cancel(OperationTag(kind: .accept).userData) }
        // Clients that completed connect() before the signal sit in the
        // backlog; they sent their requests before shutdown, so serve them.
        if let listener {
            while true {
                let fd = cu_accept(listener.fd)
                guard fd >= 0 else { break }
                accepted(fd: fd)
            }
            listener.close(logger: logger)
            self.listener = nil
        }
        for case let connection? in connections where connection.state == .open {
            connection.drainInputWhenReceiveEnds = true
            beginDrain(connection, reason: .shutdown)
        }
        nextHousekeeping = now
    }

    /// Cancels what is still armed and reaps every completion, so no SQE
    /// outlives the memory it points at when the ring is destroyed.
    private func tearDown() {
        runState = .stopped
        let leftovers = inbox.close()
        if !leftovers.isEmpty {
            logger.debug("dropping \(leftovers.count) inbox messages at shutdown")
        }
        if acceptArmed { cancel(OperationTag(kind: .accept).userData) }
        if wakeArmed { cancel(OperationTag(kind: .wake).userData) }
        var attempts = 0
        while (acceptArmed || wakeArmed) && attempts < 50 {
            _ = ring.submitAndWait(timeoutNanoseconds: 20_000_000)
            _ = ring.drainCompletions { userData, result, flags in
                handleCompletion(userData: userData, result: result, flags: flags)
            }
            attempts += 1
        }
        receiveBuffers.publishReturns()
        listener?.close(logger: logger)
        listener = nil
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
