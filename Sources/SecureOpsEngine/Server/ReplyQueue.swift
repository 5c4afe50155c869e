/// A connection's replies in request order (docs/DESIGN.md, invariant 3),
/// its offloaded requests, which run one at a time, and its replies that
/// wait for the journal to have their frame.
///
/// A reply goes straight out unless an earlier request's offloaded reply is
/// still outstanding; then it waits here until everything before it is
/// ready. Bookkeeping only: what a released reply does (output, a
/// subscription, a close) is the loop's.
struct ReplyQueue {
    /// The id the next request gets.
    private(set) var nextRequestID: UInt64 = 0
    /// Replies waiting for an earlier offloaded one, in request order.
    /// Empty unless an offloaded request is outstanding.
    private(set) var waiting: [PendingReply] = []
    /// Offloaded requests not yet answered (running or queued).
    private(set) var outstandingOffloads = 0
    /// Replies waiting for the journal (`Reply.respondWhenPersisted`).
    private(set) var awaitingPersistence = 0

    /// Requests read but not answered yet, whatever they wait for: what the
    /// pending-request limit counts.
    var unanswered: Int { outstandingOffloads + awaitingPersistence }
    /// The one of them on the pool now; the rest wait in `queued`.
    private(set) var running: RunningOffload?
    private(set) var queued: [QueuedOffload] = []

    /// Numbers a new request.
    mutating func takeRequestID() -> UInt64 {
        defer { nextRequestID += 1 }
        return nextRequestID
    }

    var isEmpty: Bool { waiting.isEmpty }

    /// Whether a reply ready now may leave at once (nothing before it waits).
    var canReleaseAtOnce: Bool { waiting.isEmpty }

    mutating func holdBack(_ reply: PendingReply) {
        assert(!waiting.isEmpty, "a ready reply with nothing before it leaves at once")
        waiting.append(reply)
    }

    /// Records an offloaded request. Returns it, with its cancellation
    /// signal, when it may start now; otherwise it waits for the one
    /// before it.
    mutating func offload(
        _ work: @escaping @Sendable () throws -> OffloadedReply, requestID: UInt64
    ) -> StartableOffload? {
        waiting.append(PendingReply(requestID: requestID, ready: false, bytes: [], subscribeAt: nil, closeAfterwards: false))
        outstandingOffloads += 1
        let offload = QueuedOffload(requestID: requestID, work: work)
        guard running == nil else {
            queued.append(offload)
            return nil
        }
        return start(offload)
    }

    private mutating func start(_ offload: QueuedOffload) -> StartableOffload {
        let cancellation = OffloadCancellation()
        running = RunningOffload(requestID: offload.requestID, cancellation: cancellation)
        return StartableOffload(requestID: offload.requestID, work: offload.work, cancellation: cancellation)
    }

    /// The offloaded request `requestID` finished with `bytes`. Returns the
    /// replies that may leave now, in order, and the next offload to start.
    mutating func finish(
        _ requestID: UInt64, bytes: [UInt8], closeAfterwards: Bool
    ) -> (released: ArraySlice<PendingReply>, next: StartableOffload?) {
        precondition(running?.requestID == requestID, "request \(requestID) finished but \(String(describing: running?.requestID)) was running")
        outstandingOffloads -= 1
        running = nil
        let released = fill(requestID, bytes: bytes, closeAfterwards: closeAfterwards)
        var next: StartableOffload?
        if !queued.isEmpty {
            next = start(queued.removeFirst())
        }
        return (released, next)
    }

    /// Holds the reply to `requestID` until the journal has its frame
    /// (`persisted`); the replies after it wait behind it.
    mutating func awaitPersistence(requestID: UInt64) {
        waiting.append(PendingReply(requestID: requestID, ready: false, bytes: [], subscribeAt: nil, closeAfterwards: false))
        awaitingPersistence += 1
    }

    /// The journal has the frame `requestID` waited for; its reply is
    /// `bytes`. Returns the replies that may leave now, in order.
    mutating func persisted(_ requestID: UInt64, bytes: [UInt8]) -> ArraySlice<PendingReply> {
        precondition(awaitingPersistence > 0, "a persisted reply for request \(requestID) with none awaited")
        awaitingPersistence -= 1
        return fill(requestID, bytes: bytes, closeAfterwards: false)
    }

    /// Fills the held reply to `requestID` and releases the ready prefix.
    private mutating func fill(_ requestID: UInt64, bytes: [UInt8], closeAfterwards: Bool) -> ArraySlice<PendingReply> {
        guard let index = waiting.firstIndex(where: { $0.requestID == requestID }) else {
            preconditionFailure("a reply for request \(requestID), which is not held")
        }
        precondition(!waiting[index].ready, "request \(requestID) answered twice")
        waiting[index].bytes = bytes
        waiting[index].closeAfterwards = closeAfterwards
        waiting[index].ready = true
        let releasable = waiting.prefix { $0.ready }.count
        let released = waiting[0..<releasable]
        waiting.removeFirst(releasable)
        return released
    }

    /// The shutdown's grace period is over: the running offload is told to
    /// stop, queued ones never start, and every reply still missing becomes
    /// `errorFrame`. Returns every waiting reply, in order, to go out now,
    /// and how many queued offloads never started.
    mutating func abandonOffloads(errorFrame: [UInt8]) -> (released: [PendingReply], neverStarted: Int, abandoned: UInt64?) {
        let abandoned = running?.requestID
        running?.cancellation.cancel()
        running = nil
        let neverStarted = queued.count
        queued.removeAll()
        outstandingOffloads = 0
        awaitingPersistence = 0
        for index in waiting.indices where !waiting[index].ready {
            waiting[index].bytes = errorFrame
            waiting[index].ready = true
        }
        defer { waiting.removeAll() }
        return (waiting, neverStarted, abandoned)
    }

    /// A subscription ended before the reply that starts it left: it does
    /// not start.
    mutating func cancelPendingSubscriptions() {
        for index in waiting.indices { waiting[index].subscribeAt = nil }
    }

    var hasPendingSubscription: Bool { waiting.contains { $0.subscribeAt != nil } }

    /// At close: everything left. Returns how many queued offloads never
    /// started (they will never report back).
    mutating func discard() -> Int {
        defer {
            waiting.removeAll()
            queued.removeAll()
        }
        return queued.count
    }
}

/// A reply that must wait for an earlier request's offloaded reply.
struct PendingReply {
    let requestID: UInt64
    var ready: Bool
    var bytes: [UInt8]
    /// Set when this reply starts a subscription: the cursor becomes live
    /// only once the reply has been queued, so no frame can overtake it.
    var subscribeAt: UInt64?
    var closeAfterwards: Bool
}

/// Offloaded work waiting for the connection's previous offload to finish.
struct QueuedOffload {
    let requestID: UInt64
    let work: @Sendable () throws -> OffloadedReply
}

/// The offloaded request on the pool, and the signal that tells it to stop.
struct RunningOffload {
    let requestID: UInt64
    let cancellation: OffloadCancellation
}

/// Offloaded work to hand to the pool now.
struct StartableOffload {
    let requestID: UInt64
    let work: @Sendable () throws -> OffloadedReply
    let cancellation: OffloadCancellation
}
