import Synchronization
import SecureOpsSystem
import SecureOpsJournal

/// A snapshot of the engine's counters.
/// How the journal is doing (`EngineStatistics.journal`).
public struct JournalStatus: Sendable, Equatable {
    public var health: JournalHealth = .healthy
    public var syncPolicy: JournalSyncPolicy
    /// What writes it: the loop's io_uring ring, or a writer thread.
    public var writer: JournalWriterKind
    /// Every frame up to this sequence has been written (and synced per
    /// the policy), or failed to be.
    public var through: UInt64 = 0
    /// Frames that could not be written since the engine started.
    public var failedRecords = 0
    /// Segments, bytes and sequences on disk now.
    public var storage: JournalStatistics

    public init(syncPolicy: JournalSyncPolicy, writer: JournalWriterKind, storage: JournalStatistics) {
        self.syncPolicy = syncPolicy
        self.writer = writer
        self.storage = storage
    }
}

/// What writes an engine's journal.
public enum JournalWriterKind: String, Sendable, Equatable {
    /// The loop, with io_uring `write` and `fsync` operations.
    case ioUring = "io_uring"
    /// A thread of its own (`pwrite`, `fdatasync`).
    case thread
}

public struct EngineStatistics: Sendable, Equatable {
    /// The journal's state; nil when the engine has none.
    public var journal: JournalStatus?
    /// Connections open now (admitted or being refused).
    public var connections = 0
    /// Connections the engine may hold at once.
    public var connectionCapacity = 0
    public var subscribers = 0
    public var connectionsAccepted = 0
    public var connectionsRefused = 0
    public var framesReceived = 0
    public var malformedFrames = 0
    public var oversizedFrames = 0
    public var frameTimeouts = 0
    public var broadcastPublished = 0
    public var broadcastRetained = 0
    public var broadcastRetainedBytes = 0
    public var lastSequence: UInt64 = 0
    public var lagEvents = 0
    public var lagDisconnects = 0
    public var slowDisconnects = 0
    public var completionQueueOverflows = 0
    public var receiveBufferExhaustions = 0
    public var acceptErrors = 0
    public var offloadsInFlight = 0
    /// Connections whose requests are not read now because their replies
    /// or offloaded requests are at their limits.
    public var readingPaused = 0
}

/// The live counters behind `EngineStatistics`. Written by the loop thread
/// (relaxed stores), read from anywhere.
final class EngineCounters: Sendable {
    let connections = Atomic<Int>(0)
    let connectionCapacity = Atomic<Int>(0)
    let subscribers = Atomic<Int>(0)
    let connectionsAccepted = Atomic<Int>(0)
    let connectionsRefused = Atomic<Int>(0)
    let framesReceived = Atomic<Int>(0)
    let malformedFrames = Atomic<Int>(0)
    let oversizedFrames = Atomic<Int>(0)
    let frameTimeouts = Atomic<Int>(0)
    let broadcastPublished = Atomic<Int>(0)
    let broadcastRetained = Atomic<Int>(0)
    let broadcastRetainedBytes = Atomic<Int>(0)
    let lastSequence = Atomic<UInt64>(0)
    let lagEvents = Atomic<Int>(0)
    let lagDisconnects = Atomic<Int>(0)
    let slowDisconnects = Atomic<Int>(0)
    let completionQueueOverflows = Atomic<Int>(0)
    let receiveBufferExhaustions = Atomic<Int>(0)
    let acceptErrors = Atomic<Int>(0)
    let offloadsInFlight = Atomic<Int>(0)
    let readingPaused = Atomic<Int>(0)
    /// Set by the loop as the journal writer reports; nil without a journal.
    let journal = Locked<JournalStatus?>(nil)

    /// The counters, and the journal's state when there is one.
    func snapshot(journal: Journal?) -> EngineStatistics {
        var statistics = snapshot
        if let journal {
            statistics.journal = self.journal.withLock { $0 }
            statistics.journal?.storage = journal.statistics
        }
        return statistics
    }

    var snapshot: EngineStatistics {
        EngineStatistics(
            connections: connections.load(ordering: .relaxed),
            connectionCapacity: connectionCapacity.load(ordering: .relaxed),
            subscribers: subscribers.load(ordering: .relaxed),
            connectionsAccepted: connectionsAccepted.load(ordering: .relaxed),
            connectionsRefused: connectionsRefused.load(ordering: .relaxed),
            framesReceived: framesReceived.load(ordering: .relaxed),
            malformedFrames: malformedFrames.load(ordering: .relaxed),
            oversizedFrames: oversizedFrames.load(ordering: .relaxed),
            frameTimeouts: frameTimeouts.load(ordering: .relaxed),
            broadcastPublished: broadcastPublished.load(ordering: .relaxed),
            broadcastRetained: broadcastRetained.load(ordering: .relaxed),
            broadcastRetainedBytes: broadcastRetainedBytes.load(ordering: .relaxed),
            lastSequence: lastSequence.load(ordering: .relaxed),
            lagEvents: lagEvents.load(ordering: .relaxed),
            lagDisconnects: lagDisconnects.load(ordering: .relaxed),
            slowDisconnects: slowDisconnects.load(ordering: .relaxed),
            completionQueueOverflows: completionQueueOverflows.load(ordering: .relaxed),
            receiveBufferExhaustions: receiveBufferExhaustions.load(ordering: .relaxed),
            acceptErrors: acceptErrors.load(ordering: .relaxed),
            offloadsInFlight: offloadsInFlight.load(ordering: .relaxed),
            readingPaused: readingPaused.load(ordering: .relaxed))
    }
}
