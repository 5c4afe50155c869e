import Glibc
import SecureOpsSystem

/// The thread that writes the journal where the event loop cannot submit
/// file writes itself (epoll; with io_uring the loop writes through its
/// ring), so that the loop never waits for the disk: the loop hands over each turn's records (`submit`), the
/// writer writes everything queued in one go, syncs per the policy, and
/// reports how far the records are persisted (`JournalProgress`), which
/// the loop turns into `publish` replies.
public final class JournalWriter: Sendable {
    public let journal: Journal
    private let queue: WaitQueue
    private let report: @Sendable (JournalProgress) -> Void
    private let thread: Locked<pthread_t?> = Locked(nil)

    /// `report` runs on the writer thread after every round of writes.
    public init(journal: Journal, report: @escaping @Sendable (JournalProgress) -> Void) throws(SystemError) {
        self.journal = journal
        self.report = report
        queue = WaitQueue()
        let started = Threads.start { [self] in
            Threads.nameCurrentThread("journal-writer")
            self.run()
        }
        switch started {
        case .success(let handle): thread.withLock { $0 = handle }
        case .failure(let error): throw error
        }
    }

    /// Queues records for the writer; never blocks on the disk.
    public func submit(_ batch: JournalBatch) {
        queue.push(batch)
    }

    /// Writes and syncs everything queued, then ends the thread. The last
    /// report has been made when this returns.
    public func stop() {
        queue.close()
        if let handle = thread.withLock({ state -> pthread_t? in defer { state = nil }; return state }) {
            pthread_join(handle, nil)
        }
    }

    // MARK: - The writer thread

    private func run() {
        var schedule = JournalSchedule(journal.configuration, now: SystemClock.monotonicNanoseconds())
        var health = JournalHealth.healthy
        while true {
            let wakeAt = min(schedule.nextSyncAt ?? .max, schedule.retentionDueAt)
            let (batches, closed) = queue.take(wakingAt: wakeAt)
            var progress = JournalProgress(through: 0, health: health)
            var written: [JournalBatch] = []
            for batch in batches {
                do {
                    try journal.append(batch)
                    written.append(batch)
                    schedule.wrote()
                } catch {
                    progress.failed.append(batch.firstSequence...batch.lastSequence)
                    progress.failure = error
                }
                progress.through = batch.lastSequence
            }
            let now = SystemClock.monotonicNanoseconds()
            let syncDue = schedule.syncDue(now: now, closing: closed)
            if syncDue {
                do {
                    try journal.sync()
                    schedule.syncFinished(succeeded: true, now: now)
                } catch {
                    // What `always` was about to confirm is not on the disk.
                    if schedule.policy == .always {
                        progress.failed.append(contentsOf: written.map { $0.firstSequence...$0.lastSequence })
                    }
                    progress.failure = error
                    schedule.syncFinished(succeeded: false, now: now)
                }
            }
            if now >= schedule.retentionDueAt {
                progress.dropped = journal.enforceRetention(nowMilliseconds: SystemClock.realtimeMilliseconds())
                schedule.retentionRan(now: now)
            }
            health = health.after(failure: progress.failure, succeeded: !written.isEmpty || syncDue)
            progress.health = health
            if !batches.isEmpty || syncDue || !progress.dropped.isEmpty || progress.failure != nil { report(progress) }
            if closed && queue.isDrained { return }
        }
    }
}

/// How far the journal has the records handed to it.
public struct JournalProgress: Sendable {
    /// Every record up to this sequence has been dealt with: persisted per
    /// the sync policy, or listed in `failed`. 0 when no records were in
    /// this round.
    public var through: UInt64
    /// Sequences that could not be persisted (a full or failing disk).
    public var failed: [ClosedRange<UInt64>] = []
    public var failure: JournalError?
    /// Segments retention dropped in this round.
    public var dropped: [DroppedSegment] = []
    public var health: JournalHealth

    public init(through: UInt64, health: JournalHealth) {
        self.through = through
        self.health = health
    }

    /// Whether `sequence` (at most `through`) was persisted.
    public func persisted(_ sequence: UInt64) -> Bool {
        !failed.contains { $0.contains(sequence) }
    }
}

public enum JournalHealth: Sendable, Equatable {
    case healthy
    /// The last write or sync failed; the text says why.
    case failing(String)

    /// The health after a round of writes: failing when something in it
    /// failed, healthy again once a write or sync went through.
    public func after(failure: JournalError?, succeeded: Bool) -> JournalHealth {
        if let failure { return .failing(failure.description) }
        return succeeded ? .healthy : self
    }
}

/// Batches from the loop to the writer: a mutex and a condition variable
/// (the writer sleeps on it between rounds, or until a sync is due).
private final class WaitQueue: @unchecked Sendable {
    // Allocated: pthread objects must not move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var batches: [JournalBatch] = []
    private var closed = false

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func push(_ batch: JournalBatch) {
        pthread_mutex_lock(mutex)
        let wasEmpty = batches.isEmpty
        batches.append(batch)
        pthread_mutex_unlock(mutex)
        if wasEmpty { pthread_cond_signal(condition) }
    }

    func close() {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_mutex_unlock(mutex)
        pthread_cond_signal(condition)
    }

    var isDrained: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return batches.isEmpty
    }

    /// Everything queued, waiting for some (or until `wakingAt`, monotonic
    /// nanoseconds) when there is none; and whether the queue is closed.
    func take(wakingAt: UInt64?) -> ([JournalBatch], Bool) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while batches.isEmpty && !closed {
            if let wakingAt {
                var deadline = timespec(tv_sec: Int(wakingAt / 1_000_000_000), tv_nsec: Int(wakingAt % 1_000_000_000))
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        defer { batches.removeAll(keepingCapacity: true) }
        return (batches, closed)
    }
}
