/// How a lost connection is re-established: attempt after attempt, waiting
/// `initialDelay` before the first and twice as long before each next one,
/// up to `maximumDelay`, for at most `maximumAttempts` attempts in a row
/// (nil: until the client is closed or the subscription cancelled).
///
/// Used by ``SecureOpsAsyncClient/Configuration/reconnect`` (the request
/// connection) and by ``SecureOpsAsyncClient/subscribe(since:reconnect:timeout:)``
/// (each subscription's own connection). An attempt fails when the
/// connection cannot be made, or is made and then closed by the daemon with
/// an error before it served anything (it is at its connection limit, say).
/// Attempts are never made against a server that is not trusted
/// (`IpcError.untrustedServer`) or that refused this peer
/// (`IpcError.unauthorized`): those end the reconnecting at once.
public struct ReconnectPolicy: Sendable, Equatable {
    public var initialDelay: Duration
    public var maximumDelay: Duration
    public var maximumAttempts: Int?

    public init(initialDelay: Duration = .milliseconds(50), maximumDelay: Duration = .seconds(2), maximumAttempts: Int? = nil) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.maximumAttempts = maximumAttempts
    }

    /// 50 ms, doubling up to 2 s, forever.
    public static let `default` = ReconnectPolicy()

    /// The wait before attempt `attempt` (from 1).
    public func delay(beforeAttempt attempt: Int) -> Duration {
        var delay = initialDelay
        for _ in 1..<max(1, attempt) {
            if delay >= maximumDelay { break }
            delay *= 2
        }
        return min(delay, maximumDelay)
    }

    /// Whether attempt `attempt` (from 1) may be made.
    func allows(attempt: Int) -> Bool {
        maximumAttempts.map { attempt <= $0 } ?? true
    }
}
