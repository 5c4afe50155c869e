/// Lets through at most `perWindow` events per key per window and counts
/// the rest, to be reported once the key's window is over: a flood leaves a
/// handful of lines and one summary, not one line per event. Keyed by what
/// the kernel says about peers (their uid), so the table is bounded by the
/// users that connect, and `expire` empties it window by window.
///
/// A value type with no lock: keep it on one thread or behind one.
public struct WindowedRateLimiter<Key: Hashable & Sendable>: Sendable {
    public enum Decision: Sendable, Equatable {
        /// Let this one through; `suppressedBefore` events of the key's
        /// previous window were not, and need their summary first.
        case allow(suppressedBefore: Int)
        case suppress
    }

    private struct Window: Sendable {
        var start: UInt64
        var allowed: Int
        var suppressed: Int
    }

    public let perWindow: Int
    public let windowNanoseconds: UInt64
    private var windows: [Key: Window] = [:]

    public init(perWindow: Int, windowSeconds: Double) {
        precondition(perWindow > 0 && windowSeconds > 0)
        self.perWindow = perWindow
        windowNanoseconds = UInt64(windowSeconds * 1e9)
    }

    /// Whether the event of `key` at `now` (monotonic nanoseconds) goes through.
    public mutating func decide(_ key: Key, now: UInt64) -> Decision {
        guard var window = windows[key], now &- window.start < windowNanoseconds else {
            let before = windows[key]?.suppressed ?? 0
            windows[key] = Window(start: now, allowed: 1, suppressed: 0)
            return .allow(suppressedBefore: before)
        }
        defer { windows[key] = window }
        if window.allowed < perWindow {
            window.allowed += 1
            return .allow(suppressedBefore: 0)
        }
        window.suppressed += 1
        return .suppress
    }

    /// Forgets windows that are over; returns the keys whose suppressed
    /// events still need their summary.
    public mutating func expire(now: UInt64) -> [(key: Key, suppressed: Int)] {
        var summaries: [(key: Key, suppressed: Int)] = []
        for (key, window) in windows where now &- window.start >= windowNanoseconds {
            if window.suppressed > 0 { summaries.append((key, window.suppressed)) }
            windows[key] = nil
        }
        return summaries
    }

    /// Every pending summary (at shutdown), forgetting all windows.
    public mutating func drain() -> [(key: Key, suppressed: Int)] {
        defer { windows.removeAll() }
        return windows.compactMap { $0.value.suppressed > 0 ? ($0.key, $0.value.suppressed) : nil }
    }

    /// "10 per uid per 60 s", for messages.
    public var limitDescription: String {
        "\(perWindow) per uid per \(windowNanoseconds / 1_000_000_000) s"
    }
}
