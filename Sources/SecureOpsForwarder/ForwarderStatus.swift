/// Where the forwarder stands.
public enum ForwarderState: String, Sendable, Equatable {
    /// Not started, or stopped.
    case disabled
    /// Trying to connect (or reconnect), or to set the stream up.
    case connecting
    /// Connected, the stream there: forwarding.
    case connected
    /// The last attempt failed in a way retrying will not fix (credentials
    /// rejected, certificate not trusted, a file unreadable). The
    /// forwarder still retries, at the slowest backoff, so a fixed server
    /// or file is picked up without a restart.
    case failed
}

/// A snapshot of the forwarder, for status requests and logs.
public struct ForwarderStatus: Sendable, Equatable {
    public var state: ForwarderState
    /// The server connected to now.
    public var server: String?
    /// Every alert up to this sequence is stored in the stream.
    public var acknowledgedSequence: UInt64
    /// Alerts notified but not yet acknowledged (last notified − acknowledged).
    public var unforwarded: UInt64
    /// The last failure in words; kept after recovery, for the operator.
    public var lastError: String?
    /// Alerts retention dropped before they were forwarded, in total.
    public var droppedBeforeForwarding: UInt64
}
