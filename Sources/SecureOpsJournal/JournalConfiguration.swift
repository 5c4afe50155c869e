/// When the journal's writes reach the disk itself, not only the page cache.
public enum JournalSyncPolicy: String, Sendable, CaseIterable {
    /// `fdatasync` before a record counts as persisted; records queued
    /// together share one (group commit).
    case always
    /// `fdatasync` every `syncInterval`: a record counts as persisted once
    /// written, which a crash of the process does not lose; a power loss
    /// loses at most the last interval.
    case interval
    /// Never `fdatasync`: the kernel writes back when it chooses.
    case none
}

public struct JournalConfiguration: Sendable {
    public var syncPolicy: JournalSyncPolicy = .interval
    public var syncIntervalMilliseconds = 100
    /// Retention: the oldest segment is dropped while the journal is larger
    /// (the segment being written is always kept).
    public var maxBytes = 1 << 30
    /// Retention: a segment whose newest record is older is dropped.
    public var maxAgeSeconds = 7 * 24 * 3600
    /// A new segment starts once the current one reaches this size.
    public var segmentBytes = 64 << 20

    public init() {}
}
