/// When a journal writer syncs and enforces retention: the one schedule
/// both writers keep (the `JournalWriter`'s thread on epoll, the event
/// loop's io_uring writer). Times are monotonic nanoseconds.
public struct JournalSchedule: Sendable {
    public let policy: JournalSyncPolicy
    private let syncInterval: UInt64
    private var lastSync: UInt64
    /// Records were written since the last successful sync.
    public private(set) var hasUnsyncedWrites = false
    private var lastRetention: UInt64 = 0
    private var writtenSinceRetention = false

    /// Retention runs at most this often while records are written, once
    /// more after the last write (a burst that ends between two checks is
    /// not left over the limits until the next record), and every
    /// `idleRetentionInterval` when idle (for the age limit).
    static let busyRetentionInterval: UInt64 = 100_000_000
    static let idleRetentionInterval: UInt64 = 60_000_000_000

    public init(_ configuration: JournalConfiguration, now: UInt64) {
        policy = configuration.syncPolicy
        syncInterval = UInt64(configuration.syncIntervalMilliseconds) * 1_000_000
        lastSync = now
    }

    public mutating func wrote() {
        hasUnsyncedWrites = true
        writtenSinceRetention = true
    }

    /// Whether what was written must be synced now; `closing`: the writer
    /// is about to stop, which syncs under every policy.
    public func syncDue(now: UInt64, closing: Bool = false) -> Bool {
        guard hasUnsyncedWrites else { return false }
        switch policy {
        case .always: return true
        case .interval: return closing || now >= lastSync + syncInterval
        case .none: return closing
        }
    }

    /// A sync was tried. After a failure the writes stay unsynced and the
    /// next attempt waits for the next interval, not a spin.
    public mutating func syncFinished(succeeded: Bool, now: UInt64) {
        if succeeded { hasUnsyncedWrites = false }
        lastSync = now
    }

    /// When an `interval` sync falls due; nil when none is owed.
    public var nextSyncAt: UInt64? {
        policy == .interval && hasUnsyncedWrites ? lastSync + syncInterval : nil
    }

    public var retentionDueAt: UInt64 {
        lastRetention + (writtenSinceRetention ? Self.busyRetentionInterval : Self.idleRetentionInterval)
    }

    public mutating func retentionRan(now: UInt64) {
        lastRetention = now
        writtenSinceRetention = false
    }
}
