/// What a handler may do while it answers one request, on the loop thread.
///
/// One context is reused for every request; do not keep it after `handle`
/// returns.
public final class RequestContext {
    /// The connection the request came from, with its peer credentials.
    public var connection: ConnectionInfo { current!.info }

    /// The peer's credentials (`connection.credentials`, without building
    /// the rest); nil for a TCP peer.
    public var credentials: PeerCred? { current!.credentials }

    /// The connection being answered. Not retained: the loop holds every
    /// open connection, and a context is used only while `handle` runs.
    @exclusivity(unchecked) private unowned(unsafe) var current: Connection?
    /// Write the reply frame(s) here, each ending with `newline()`.
    @exclusivity(unchecked) public var response = JSONWriter(capacity: 4096)

    /// The engine's broadcast stream identity (`Engine.epoch`): send it with
    /// a subscription's first reply so a client that reconnects can tell a
    /// restarted server, whose sequences began again at 1, from the same one.
    public let epoch: StreamEpoch

    unowned let loop: EventLoop
    @exclusivity(unchecked) private(set) var subscribeAt: UInt64?

    init(loop: EventLoop, epoch: StreamEpoch) {
        self.loop = loop
        self.epoch = epoch
    }

    func begin(_ connection: Connection) {
        current = connection
        response.reset()
        subscribeAt = nil
    }

    func end() {
        subscribeAt = nil
    }

    /// Broadcasts one frame to every subscriber. `encode` writes the frame
    /// (ending with a newline) given its sequence and the current time in
    /// milliseconds since the epoch. Returns the sequence.
    @discardableResult
    public func publish(_ encode: (_ sequence: UInt64, _ timestampMilliseconds: Int64, inout JSONWriter) -> Void) -> UInt64 {
        // A handler runs on the loop thread, which closes the inbox only
        // after its last turn: it cannot be closed here.
        guard let sequence = loop.inbox.publish(encode) else {
            preconditionFailure("a handler published after the loop stopped")
        }
        return sequence
    }

    /// Turns this connection into a subscriber of the broadcast stream once
    /// this request's reply has been queued. With `since`, retained frames
    /// with a greater sequence are replayed first; then frames follow live,
    /// with no gap and no duplicate. Returns the sequence the next live frame
    /// will carry.
    public func subscribe(since: UInt64?) -> UInt64 {
        loop.absorbPublishedFrames()
        let next = loop.broadcast.nextSequence
        if let since, since < next {
            subscribeAt = since + 1
        } else {
            subscribeAt = next
        }
        return next
    }

    /// Calls `body` with up to `limit` of the newest retained frames, oldest
    /// first, including frames published a moment ago. With `maxBytes`,
    /// only as many of the newest as fit in that many bytes (the newest
    /// always, whatever its size), so a reply stays bounded whatever was
    /// retained. Returns true when `maxBytes` left out frames `limit`
    /// would have included.
    @discardableResult
    public func forEachRetainedFrame(
        newest limit: Int, maxBytes: Int = .max, _ body: (_ sequence: UInt64, _ frame: UnsafeRawBufferPointer) -> Void
    ) -> Bool {
        loop.absorbPublishedFrames()
        let ring = loop.broadcast
        // Everything retained, including frames the journal does not have
        // yet (unlike subscriptions, see `EventLoop.sendableEnd`): a client
        // that publishes then asks for `alerts` finds its own alert.
        let end = ring.nextSequence
        guard limit > 0, end > ring.firstSequence else { return false }
        let oldestWanted = max(ring.firstSequence, end - UInt64(min(limit, Int(end - ring.firstSequence))))
        var first = end - 1
        var bytes = ring.frame(first).count
        while first > oldestWanted {
            let size = ring.frame(first - 1).count
            if bytes + size > maxBytes { break }
            bytes += size
            first -= 1
        }
        var sequence = first
        while sequence < end {
            body(sequence, ring.frame(sequence))
            sequence += 1
        }
        return first > oldestWanted
    }

    /// The engine's counters right now.
    public var statistics: EngineStatistics {
        loop.absorbPublishedFrames()
        return loop.counters.snapshot(journal: loop.configuration.journal)
    }
}
