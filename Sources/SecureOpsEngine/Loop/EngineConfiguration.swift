/// What the engine does with a subscriber that fell behind the broadcast
/// ring's retention (WIRE.md, "Subscription semantics").
public enum LagPolicy: String, Sendable, Codable, CaseIterable {
    /// Send the `lagged` notice and continue from the oldest retained frame.
    case skip
    /// Send the `lagged` notice and close the connection.
    case disconnect
}

/// Limits that can change while the engine runs (`Engine.updateLimits`).
/// New values apply to new frames and new connections at once; connections
/// already open keep the frame limit they started with.
public struct EngineLimits: Sendable, Equatable {
    /// Largest accepted frame, not counting the newline. Larger: one error
    /// frame, then the connection is closed.
    public var maxFrameBytes = 1 << 20
    /// Open connections at most; `nil` derives it from `RLIMIT_NOFILE`
    /// (which the engine reads but never changes). Who may take which of
    /// them (per-uid caps, slots kept for operators) is the handler's call,
    /// in `admit` (`Engine.statistics` says how many are open).
    public var maxConnections: Int?
    /// Response bytes queued for one connection before the engine stops
    /// reading its requests (it resumes below half). Broadcast frames are
    /// not counted: they live once in the ring.
    public var maxPendingOutputBytes = 4 << 20
    /// Requests of one connection waiting for an offloaded handler before
    /// the engine stops reading from it.
    public var maxPendingRequests = 128
    /// Broadcast frames retained for replay and for slow subscribers.
    public var retainedFrames = 65_536
    /// Bytes of broadcast frames retained.
    public var retainedBytes = 64 << 20
    public var onLag = LagPolicy.skip
    /// A frame must be complete this long after its first byte arrived, or
    /// the connection gets an error and is closed (a slowloris defence).
    public var frameTimeout = Duration.seconds(30)
    /// A connection whose send has not finished this long after it began is
    /// closed (a send carries at most `maxBytesPerSend` of broadcast frames
    /// plus the replies queued when it began; partial progress does not
    /// extend the deadline).
    public var stuckSendTimeout = Duration.seconds(10)
    /// The most bytes one send to one connection carries, so a burst is
    /// shared fairly between connections.
    public var maxBytesPerSend = 64 << 10

    public init() {}
}

/// Everything needed to run one engine, in one value.
public struct EngineConfiguration: Sendable {
    /// Where to listen: one or more Unix socket paths and TCP addresses.
    public var listeners: [ListenAddress]
    /// The IO backend: `auto` (the default) takes io_uring where it can be
    /// set up and epoll elsewhere.
    public var ioBackend = IOBackendChoice.auto
    /// Mode of each Unix socket file, set at bind.
    public var socketMode: UInt32 = 0o660
    /// Mode of a Unix socket's parent directory when the engine creates it.
    public var socketDirectoryMode: UInt32 = 0o750
    public var listenBacklog: Int32 = 4096
    public var limits = EngineLimits()
    /// Submission queue slots. Bursts larger than this are submitted in parts.
    public var submissionQueueEntries: UInt32 = 4096
    /// Completion queue slots; fixed, whatever the number of connections
    /// (overflow is kept by the kernel and counted).
    public var completionQueueEntries: UInt32 = 32_768
    /// Receive buffers shared by all connections (a power of two).
    public var receiveBufferCount = 1024
    public var receiveBufferSize = 4096
    /// How long shutdown waits for responses and queued frames to flush.
    public var shutdownGracePeriod = Duration.seconds(5)
    /// Name of the loop thread, as `top -H` shows it (at most 15 bytes).
    public var threadName = "secureops-ring"
    /// Where the broadcast stream is kept on disk, opened (and recovered)
    /// by the caller; nil keeps it in memory only. With a journal the
    /// stream outlives the process: the engine takes its epoch and next
    /// sequence from it, starts with its newest frames retained for
    /// `since` and replay, writes every frame to it (`journalWriter`),
    /// and holds a `respondWhenPersisted` reply until its frame is written
    /// (docs/DESIGN.md, "The journal").
    public var journal: Journal?
    /// Who writes the journal: the loop itself where its backend can
    /// (io_uring), else a writer thread; or always a writer thread.
    public var journalWriter = JournalWriterChoice.loop
    /// Called on the loop thread when the journal's writes start failing
    /// (a full or failing disk) and when they work again. Frames still
    /// reach subscribers meanwhile; they are not on disk.
    public var journalHealthChanged: (@Sendable (JournalHealth) -> Void)?
    /// Called on the loop thread each time the journal has dealt with
    /// frames up to a newer sequence (what a reader of the journal, such
    /// as a forwarder, waits for). Keep it short: a lock and a signal.
    public var journalAdvanced: (@Sendable (_ through: UInt64) -> Void)?

    /// Who writes the journal (`EngineConfiguration.journalWriter`).
    public enum JournalWriterChoice: String, Sendable, CaseIterable {
        /// The loop submits the writes and syncs on its io_uring ring, each
        /// turn's frames in one write; on epoll, a writer thread.
        case loop
        /// A writer thread, whatever the backend.
        case thread
    }

    /// Listens on one Unix socket at `socketPath` (at most 107 bytes).
    public init(socketPath: String) {
        listeners = [.unix(path: socketPath)]
    }

    /// Listens on every address given (Unix paths, TCP addresses).
    public init(listeners: [ListenAddress]) {
        self.listeners = listeners
    }
}
