/// One accepted client, owned by the loop thread.
///
/// Kept small: an idle subscriber is this object plus the kernel's socket;
/// buffers are borrowed from shared pools only while there is something to
/// send or an unfinished line to hold.
final class Connection {
    enum State {
        /// Reading requests and answering them.
        case open
        /// No more requests are read; pending replies (and, for a subscriber
        /// shutting down, queued frames) are flushed, then the socket closes.
        case draining
        /// Operations are being cancelled; the socket closes once the last
        /// completion has been reaped.
        case closing
        /// The socket is closed and the slot released; late completions for
        /// this connection no longer find it.
        case closed
    }

    let id: ConnectionID
    let fd: Int32
    /// Who it is and which listener it came through, fixed at accept.
    let info: ConnectionInfo
    @exclusivity(unchecked) var state = State.open
    /// Why the connection is closing; the first cause recorded wins.
    @exclusivity(unchecked) var closeReason: CloseReason?
    @exclusivity(unchecked) var framer: LineFramer
    /// When the first byte of the unfinished frame in `framer` arrived;
    /// 0 when there is none.
    @exclusivity(unchecked) var frameStartedAt: UInt64 = 0

    /// Whether its requests are read (see `ReadState`).
    @exclusivity(unchecked) var readState = ReadState.reading
    /// Bytes received while `paused` (or left over when a pause came in the
    /// middle of a read), handled in order before anything read later.
    /// Bounded by what the socket held when reading stopped.
    @exclusivity(unchecked) var heldInput: [UInt8] = []
    /// At shutdown: once the armed receive has ended, read what the kernel
    /// already holds for this socket, so requests sent before shutdown are
    /// answered.
    @exclusivity(unchecked) var drainInputWhenReceiveEnds = false

    // What the backend holds for this connection. The socket is closed
    // only when all three are idle.
    @exclusivity(unchecked) var receive = KernelOperation.idle
    @exclusivity(unchecked) var hangupWatch = KernelOperation.idle
    /// The send in flight (at most one per connection: two could reorder
    /// bytes on a stream socket).
    @exclusivity(unchecked) var send: SendOperation?
    /// When the send in flight began; partial progress does not move it,
    /// so everything a send carries must leave within the stuck-send
    /// deadline (a reader that takes a byte now and then cannot keep the
    /// memory it pins forever).
    @exclusivity(unchecked) var sendStartedAt: UInt64 = 0

    // Replies.
    @exclusivity(unchecked) var output: OutputBuffer?
    @exclusivity(unchecked) var replies = ReplyQueue()
    @exclusivity(unchecked) var queuedForFlush = false

    // Subscription: the sequence of the next broadcast frame to send.
    @exclusivity(unchecked) var subscriberIndex = -1
    @exclusivity(unchecked) var cursor: UInt64 = 0
    /// Whether frames older than the ring are being read from the journal
    /// for this subscriber (`JournalReplay`); ring frames wait meanwhile.
    @exclusivity(unchecked) var journalReplay = JournalReplayState.idle

    init(id: ConnectionID, fd: Int32, peer: ConnectionInfo.Peer, listener: ListenAddress, maxFrameBytes: Int) {
        self.id = id
        self.fd = fd
        info = ConnectionInfo(id: id, peer: peer, listener: listener)
        framer = LineFramer(maxFrameBytes: maxFrameBytes)
    }

    var peer: ConnectionInfo.Peer { info.peer }
    var credentials: PeerCred? { info.credentials }
    var isSubscribed: Bool { subscriberIndex >= 0 }

    var operationsInFlight: Bool { receive != .idle || hangupWatch != .idle || send != nil }

    /// Response bytes queued and not yet sent.
    var pendingOutputBytes: Int {
        (output?.count ?? 0) + (send?.responseBytes ?? 0)
    }

    /// Whether its replies or offloaded requests are at their limits, so no
    /// further frame of it may be handled now.
    func isOverLimits(_ limits: EngineLimits) -> Bool {
        pendingOutputBytes > limits.maxPendingOutputBytes || replies.unanswered >= limits.maxPendingRequests
    }
}

/// A subscriber's reading from the journal: at most one read at a time.
enum JournalReplayState: Equatable {
    case idle
    /// A read of the frames from `cursor` on is on the pool.
    case reading
    /// The last read found nothing to send (or failed): the subscriber
    /// lags to the ring once, then reading the journal may start again.
    case unavailable
}

/// An operation the backend holds for a connection.
enum KernelOperation: Equatable {
    case idle
    case armed
    /// Asked to stop; its completion is still to come.
    case cancelling
}

/// Whether a connection's requests are read and handled.
enum ReadState: Equatable {
    /// Frames are read and handled as they arrive.
    case reading
    /// Its replies or offloaded requests are over their limits: no frame is
    /// handled, even one already received, until they drain below half;
    /// the kernel's socket buffer then pushes back on the client.
    /// `peerFinished`: the peer has half-closed meanwhile; once what it
    /// sent is handled, the connection ends as on end of stream.
    case paused(peerFinished: Bool)
    /// Nothing more will be handled (it is closing, was refused, sent a
    /// frame that closes it, or half-closed as a subscriber).
    case stopped
}
