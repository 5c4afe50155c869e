import Logging
import SecureOpsJournal

/// How the loop's frames reach the journal.
enum JournalWrites {
    /// The loop writes and syncs through its own io_uring ring.
    case ring(JournalRingWriter)
    /// A writer thread (epoll, or when the configuration asks for one).
    case thread(JournalWriter)

    func submit(_ batch: JournalBatch) {
        switch self {
        case .ring(let writer): writer.submit(batch)
        case .thread(let writer): writer.submit(batch)
        }
    }

    var kind: JournalWriterKind {
        switch self {
        case .ring: .ioUring
        case .thread: .thread
        }
    }
}

/// The journal's side of the loop (docs/DESIGN.md, "The journal"): every
/// frame taken into the broadcast ring is handed to the journal's writer
/// (in `appendTakenFrames`), and a reply that must wait for its frame to be
/// on disk waits here until the writer reports.
extension EventLoop {
    /// How long the loop may wait before the io_uring journal writer has
    /// something due (a sync, retention).
    var journalWaitBudget: Int64 {
        guard case .ring(let writer) = journalWrites else { return .max }
        let deadline = writer.nextDeadline
        return deadline > now ? Int64(clamping: deadline - now) : 0
    }

    func fileWriteCompleted(result: Int32) {
        guard case .ring(let writer) = journalWrites else { return assertionFailure("a file write without the ring writer") }
        if let progress = writer.writeCompleted(result: result, now: now) { journalProgressed(progress) }
    }

    func fileSyncCompleted(result: Int32) {
        guard case .ring(let writer) = journalWrites else { return assertionFailure("a file sync without the ring writer") }
        if let progress = writer.syncCompleted(result: result, now: now) { journalProgressed(progress) }
    }

    func journalMaintained(_ outcome: JournalMaintenance) {
        guard case .ring(let writer) = journalWrites else { return }
        if let progress = writer.maintained(outcome) { journalProgressed(progress) }
    }

    /// At shutdown: everything taken is written and synced before the
    /// loop stops (waiting out what is in the kernel first).
    func finishJournal() {
        switch journalWrites {
        case nil:
            return
        case .thread(let writer):
            writer.stop()
        case .ring(let writer):
            while writer.hasOperationInFlight {
                backend.wait(timeoutNanoseconds: 20_000_000, events: self)
            }
            if let progress = writer.finishAfterOperations() { journalProgressed(progress) }
        }
    }

    /// Holds the reply to `requestID` until the journal has dealt with
    /// `sequence`. Returns true: the connection reads on (its pending-request
    /// limit counts these replies).
    func awaitPersistence(of sequence: UInt64, write: @escaping PersistedReplyWriter, for connection: Connection, requestID: UInt64) -> Bool {
        assert(persistenceWaiters.last.map { $0.sequence <= sequence } ?? true, "replies wait for the journal in sequence order")
        connection.replies.awaitPersistence(requestID: requestID)
        persistenceWaiters.append(PersistenceWaiter(connection: connection.id, requestID: requestID, sequence: sequence, write: write))
        pauseReadingIfOverLimits(connection)
        return true
    }

    /// The writer dealt with frames up to `progress.through`: their replies
    /// go out, saying whether each frame is on disk.
    func journalProgressed(_ progress: JournalProgress) {
        let failedNow = progress.failed.reduce(0) { $0 + Int($1.upperBound - $1.lowerBound + 1) }
        counters.journal.withLock { status in
            guard var updated = status else { return }
            updated.health = progress.health
            updated.through = max(updated.through, progress.through)
            updated.failedRecords += failedNow
            status = updated
        }
        if progress.health != journalHealth {
            journalHealth = progress.health
            switch progress.health {
            case .healthy: logger.notice("journal writes work again")
            case .failing(let why): logger.error("journal writes are failing; frames still reach subscribers but are not on disk", metadata: ["error": "\(why)"])
            }
            configuration.journalHealthChanged?(progress.health)
        }
        for dropped in progress.dropped {
            logger.info("journal retention dropped a segment", metadata: [
                "segment": "\(dropped.name)", "first": "\(dropped.firstSequence)", "last": "\(dropped.lastSequence)",
            ])
        }
        guard progress.through > 0 else { return }
        if progress.through > journaledThrough {
            journaledThrough = progress.through
            broadcastAdvanced = true
            configuration.journalAdvanced?(progress.through)
        }
        let reason = progress.failure.map { "\($0)" } ?? "the journal could not write it"
        while let waiter = persistenceWaiters.popFirst(where: { $0.sequence <= progress.through }) {
            guard let connection = connections.lookup(waiter.connection),
                  connection.state == .open || connection.state == .draining
            else { continue }
            scratch.reset()
            waiter.write(waiter.sequence, progress.persisted(waiter.sequence) ? .persisted : .notPersisted(reason), &scratch)
            releaseHeld(connection.replies.persisted(waiter.requestID, bytes: scratch.bytes), to: connection)
        }
    }

    /// What the ring starts with: the journal's newest frames within the
    /// retention limits, the consecutive run that ends at its newest (the
    /// ring holds no gaps).
    static func newestJournalFrames(_ configuration: EngineConfiguration, logger: Logger) -> [JournalRecord] {
        guard let journal = configuration.journal else { return [] }
        do {
            var records = try journal.newest(count: configuration.limits.retainedFrames, maxBytes: configuration.limits.retainedBytes)
            if let gap = records.indices.dropFirst().last(where: { records[$0].sequence != records[$0 - 1].sequence + 1 }) {
                records.removeFirst(gap)
            }
            guard records.last.map({ $0.sequence + 1 == journal.nextSequence }) ?? true else { return [] }
            return records
        } catch {
            logger.error("could not read the journal's newest frames; the stream continues without them", metadata: ["error": "\(error)"])
            return []
        }
    }
}

/// A reply waiting for the journal to have frame `sequence`.
struct PersistenceWaiter {
    let connection: ConnectionID
    let requestID: UInt64
    let sequence: UInt64
    let write: PersistedReplyWriter
}
