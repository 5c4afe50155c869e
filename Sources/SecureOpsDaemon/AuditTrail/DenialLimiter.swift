import SecureOpsEngine
import Synchronization

/// Keeps denied requests from flooding the audit log: at most `perWindow`
/// records per peer uid per window; the rest are counted, and the count is
/// recorded once the window is over (`denied-suppressed`).
///
/// Keyed by kernel-authenticated uids, so the table is bounded by the
/// users on the host that connect, and `expire` empties it every window.
final class DenialLimiter: Sendable {
    enum Decision: Equatable {
        /// Record this denial; `suppressedBefore` denials of the uid's
        /// previous window went unrecorded and need their summary first.
        case record(suppressedBefore: Int)
        case suppress
    }

    private struct Window {
        var start: UInt64
        var recorded: Int
        var suppressed: Int
    }

    let perWindow: Int
    let windowNanoseconds: UInt64
    private let windows = Locked<[UInt32: Window]>([:])

    init(perWindow: Int, windowSeconds: Double) {
        self.perWindow = perWindow
        windowNanoseconds = UInt64(windowSeconds * 1e9)
    }

    func decide(uid: UInt32, now: UInt64) -> Decision {
        windows.withLock { windows in
            guard var window = windows[uid], now &- window.start < windowNanoseconds else {
                let before = windows[uid]?.suppressed ?? 0
                windows[uid] = Window(start: now, recorded: 1, suppressed: 0)
                return .record(suppressedBefore: before)
            }
            defer { windows[uid] = window }
            if window.recorded < perWindow {
                window.recorded += 1
                return .record(suppressedBefore: 0)
            }
            window.suppressed += 1
            return .suppress
        }
    }

    /// Forgets windows that are over; returns the uids whose suppressed
    /// denials still need their summary record.
    func expire(now: UInt64) -> [(uid: UInt32, suppressed: Int)] {
        windows.withLock { windows in
            var summaries: [(uid: UInt32, suppressed: Int)] = []
            for (uid, window) in windows where now &- window.start >= windowNanoseconds {
                if window.suppressed > 0 { summaries.append((uid, window.suppressed)) }
                windows[uid] = nil
            }
            return summaries.sorted { $0.uid < $1.uid }
        }
    }

    /// Every pending summary, at shutdown.
    func drain() -> [(uid: UInt32, suppressed: Int)] {
        windows.withLock { windows in
            defer { windows.removeAll() }
            return windows.filter { $0.value.suppressed > 0 }.map { ($0.key, $0.value.suppressed) }.sorted { $0.uid < $1.uid }
        }
    }
}
