/// A connection's replies in request order (docs/DESIGN.md, invariant 3),
/// and its offloaded requests, which run one at a time.
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
    /// Whether one of them runs on the pool now; the rest wait in `queued`.
    private(set) var offloadRunning = false
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

    /// Records an offloaded request. Returns its work when it may start now;
    /// otherwise it waits for the one before it.
    mutating func offload(
        _ work: @escaping @Sendable () throws -> OffloadedReply, requestID: UInt64
    ) -> (@Sendable () throws -> OffloadedReply)? {
        waiting.append(PendingReply(requestID: requestID, ready: false, bytes: [], subscribeAt: nil, closeAfterwards: false))
        outstandingOffloads += 1
        if offloadRunning {
            queued.append(QueuedOffload(requestID: requestID, work: work))
            return nil
        }
        offloadRunning = true
        return work
    }

    /// The offloaded request `requestID` finished with `bytes`. Returns the
    /// replies that may leave now, in order, and the next offload to start.
    mutating func finish(
        _ requestID: UInt64, bytes: [UInt8], closeAfterwards: Bool
    ) -> (released: ArraySlice<PendingReply>, next: QueuedOffload?) {
        guard let index = waiting.firstIndex(where: { $0.requestID == requestID }) else {
            preconditionFailure("an offloaded reply for request \(requestID), which is not outstanding")
        }
        precondition(!waiting[index].ready, "request \(requestID) answered twice")
        outstandingOffloads -= 1
        offloadRunning = false
        waiting[index].bytes = bytes
        waiting[index].closeAfterwards = closeAfterwards
        waiting[index].ready = true
        let releasable = waiting.prefix { $0.ready }.count
        let released = waiting[0..<releasable]
        waiting.removeFirst(releasable)
        var next: QueuedOffload?
        if !queued.isEmpty {
            next = queued.removeFirst()
            offloadRunning = true
        }
        return (released, next)
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
