import SecureOpsJSON
/// The daemon's liveness and counters, as `status` answers them.
public struct MonitorStatus: Sendable, Equatable, Codable {
    public var running: Bool
    public var killed: Bool
    public var killReason: String?
    public var uptimeSecs: Double
    public var pid: Int32
    public var version: String
    public var connections: Int
    public var subscribers: Int
    public var alertsPublished: Int
    public var alertsRetained: Int
    public var lastSequence: UInt64
    public var lagEvents: Int
    public var policyVersion: Int
    // Extensions beyond WIRE.md's minimum (additive).
    public var connectionCapacity: Int?
    public var lagDisconnects: Int?
    public var slowDisconnects: Int?
    public var completionQueueOverflows: Int?
    public var receiveBufferExhaustions: Int?
    public var malformedFrames: Int?
    public var oversizedFrames: Int?
    public var connectionsRefused: Int?
    public var ioUring: String?
    /// The IO backend serving: `io_uring` or `epoll`.
    public var ioBackend: String?
    /// This daemon run's broadcast stream identity (16 hex digits). Alert
    /// sequences restart from 1 with a new epoch, so a client reconnecting
    /// with `since` compares epochs to tell a restart.
    public var epoch: String?
    public var frameTimeouts: Int?
    /// Connections whose requests wait unread because their replies or
    /// offloaded requests are at their limits.
    public var readingPaused: Int?
    /// Request frames received since start.
    public var framesReceived: Int?
    /// The journal on disk; absent when the daemon keeps none.
    public var journal: JournalReport?
    /// Forwarding to NATS JetStream (`state` `disabled` when not configured).
    public var forwarder: ForwarderReport?

    public init(
        running: Bool, killed: Bool, killReason: String?, uptimeSecs: Double, pid: Int32, version: String,
        connections: Int, subscribers: Int, alertsPublished: Int, alertsRetained: Int, lastSequence: UInt64,
        lagEvents: Int, policyVersion: Int
    ) {
        self.running = running
        self.killed = killed
        self.killReason = killReason
        self.uptimeSecs = uptimeSecs
        self.pid = pid
        self.version = version
        self.connections = connections
        self.subscribers = subscribers
        self.alertsPublished = alertsPublished
        self.alertsRetained = alertsRetained
        self.lastSequence = lastSequence
        self.lagEvents = lagEvents
        self.policyVersion = policyVersion
    }

    enum CodingKeys: String, CodingKey {
        case running, killed, killReason, uptimeSecs, pid, version, connections, subscribers
        case alertsPublished, alertsRetained, lastSequence, lagEvents, policyVersion
        case connectionCapacity, lagDisconnects, slowDisconnects, completionQueueOverflows
        case receiveBufferExhaustions, malformedFrames, oversizedFrames, connectionsRefused, ioUring
        case epoch, frameTimeouts, readingPaused, framesReceived, ioBackend, journal, forwarder
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(running, forKey: .running)
        try c.encode(killed, forKey: .killed)
        try c.encode(killReason, forKey: .killReason) // null, never omitted
        try c.encode(uptimeSecs, forKey: .uptimeSecs)
        try c.encode(pid, forKey: .pid)
        try c.encode(version, forKey: .version)
        try c.encode(connections, forKey: .connections)
        try c.encode(subscribers, forKey: .subscribers)
        try c.encode(alertsPublished, forKey: .alertsPublished)
        try c.encode(alertsRetained, forKey: .alertsRetained)
        try c.encode(lastSequence, forKey: .lastSequence)
        try c.encode(lagEvents, forKey: .lagEvents)
        try c.encode(policyVersion, forKey: .policyVersion)
        try c.encodeIfPresent(connectionCapacity, forKey: .connectionCapacity)
        try c.encodeIfPresent(lagDisconnects, forKey: .lagDisconnects)
        try c.encodeIfPresent(slowDisconnects, forKey: .slowDisconnects)
        try c.encodeIfPresent(completionQueueOverflows, forKey: .completionQueueOverflows)
        try c.encodeIfPresent(receiveBufferExhaustions, forKey: .receiveBufferExhaustions)
        try c.encodeIfPresent(malformedFrames, forKey: .malformedFrames)
        try c.encodeIfPresent(oversizedFrames, forKey: .oversizedFrames)
        try c.encodeIfPresent(connectionsRefused, forKey: .connectionsRefused)
        try c.encodeIfPresent(ioUring, forKey: .ioUring)
        try c.encodeIfPresent(ioBackend, forKey: .ioBackend)
        try c.encodeIfPresent(epoch, forKey: .epoch)
        try c.encodeIfPresent(frameTimeouts, forKey: .frameTimeouts)
        try c.encodeIfPresent(readingPaused, forKey: .readingPaused)
        try c.encodeIfPresent(framesReceived, forKey: .framesReceived)
        try c.encodeIfPresent(journal, forKey: .journal)
        try c.encodeIfPresent(forwarder, forKey: .forwarder)
    }
}

/// `status.journal`: where the alert journal stands (docs/WIRE.md).
public struct JournalReport: Sendable, Equatable, Codable {
    /// False while writes fail (a full or failing disk): alerts still reach
    /// subscribers, `publish` replies say `"persisted":false`.
    public var healthy: Bool
    /// `always`, `interval` or `none`.
    public var sync: String
    /// What writes it: `io_uring` (the event loop's own ring) or `thread`.
    public var writer: String?
    /// Every alert up to this sequence has been written or failed to be.
    public var persistedThrough: UInt64
    /// The oldest alert the journal still holds.
    public var firstSequence: UInt64
    public var segments: Int
    public var bytes: Int
    /// Alerts that could not be written since the daemon started.
    public var failedAlerts: Int
    /// Why writes fail, while they do (for operators; others see that they fail).
    public var lastError: String?

    public init(healthy: Bool, sync: String, writer: String?, persistedThrough: UInt64, firstSequence: UInt64, segments: Int, bytes: Int, failedAlerts: Int, lastError: String?) {
        self.healthy = healthy
        self.sync = sync
        self.writer = writer
        self.persistedThrough = persistedThrough
        self.firstSequence = firstSequence
        self.segments = segments
        self.bytes = bytes
        self.failedAlerts = failedAlerts
        self.lastError = lastError
    }
}

/// `status.forwarder`: forwarding to NATS JetStream (docs/WIRE.md).
public struct ForwarderReport: Sendable, Equatable, Codable {
    /// `disabled` (no `--forward-nats`), `connecting`, `connected` or
    /// `failed` (credentials, a certificate: what retrying alone does not
    /// fix; it still retries, slowly).
    public var state: String
    /// The server connected to now (without credentials).
    public var server: String?
    /// Every alert up to this sequence is stored in the stream.
    public var acknowledgedSequence: UInt64
    /// Alerts in the journal not yet acknowledged by the stream.
    public var unforwarded: UInt64
    /// Alerts that left the journal (retention, a failed write) before they
    /// were forwarded.
    public var droppedBeforeForwarding: UInt64
    /// The last failure (for operators; others see that there was one).
    public var lastError: String?

    /// What a daemon without `--forward-nats` reports.
    public static let disabled = ForwarderReport(state: "disabled", server: nil, acknowledgedSequence: 0, unforwarded: 0, droppedBeforeForwarding: 0, lastError: nil)

    public init(state: String, server: String?, acknowledgedSequence: UInt64, unforwarded: UInt64, droppedBeforeForwarding: UInt64, lastError: String?) {
        self.state = state
        self.server = server
        self.acknowledgedSequence = acknowledgedSequence
        self.unforwarded = unforwarded
        self.droppedBeforeForwarding = droppedBeforeForwarding
        self.lastError = lastError
    }
}
