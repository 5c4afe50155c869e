/// How long a call waits for its reply.
///
/// Every call of both clients takes one as `timeout:`; leaving it out (nil)
/// means the client's default (``SecureOpsAsyncClient/Configuration/requestTimeout``,
/// ``SecureOpsConnection/requestTimeout``, 30 seconds unless changed):
///
/// ```swift
/// import SecureOpsClient
///
/// let client = try await SecureOpsAsyncClient.connect()
/// let status = try await client.status(timeout: .seconds(2))
/// let report = try await client.audit(AuditOptions(deep: true), timeout: .never)
/// print(status.lastSequence, report.summary.fail)
/// ```
///
/// A call that times out throws `IpcError.timedOut`; the connection stays
/// usable (its reply, when it comes, is read and dropped).
public enum RequestTimeout: Sendable, Hashable, CustomStringConvertible {
    /// The reply must arrive within this long of the call.
    case after(Duration)
    /// Wait as long as it takes: until the reply, the end of the
    /// connection, or the cancellation of the calling task.
    case never

    public static func seconds<T: BinaryInteger>(_ seconds: T) -> RequestTimeout { .after(.seconds(seconds)) }
    public static func seconds(_ seconds: Double) -> RequestTimeout { .after(.seconds(seconds)) }
    public static func milliseconds<T: BinaryInteger>(_ milliseconds: T) -> RequestTimeout { .after(.milliseconds(milliseconds)) }
    public static func milliseconds(_ milliseconds: Double) -> RequestTimeout { .after(.milliseconds(milliseconds)) }

    /// "0.03 seconds", "never": as timeout errors name it.
    public var description: String {
        switch self {
        case .after(let duration): "\(duration)"
        case .never: "never"
        }
    }

    /// The CLOCK_MONOTONIC deadline (ns) this timeout sets for a call
    /// starting now; nil for `never`.
    var deadlineFromNow: UInt64? {
        switch self {
        case .after(let duration): duration.deadlineFromNow
        case .never: nil
        }
    }

    /// In seconds, for the blocking client's `poll`; nil for `never`.
    var seconds: Double? {
        switch self {
        case .after(let duration):
            let (seconds, attoseconds) = duration.components
            return max(0, Double(seconds) + Double(attoseconds) / 1e18)
        case .never: return nil
        }
    }
}
