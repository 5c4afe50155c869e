import Dispatch
import Glibc
import SecureOpsJournal
import SecureOpsSystem

/// Writes the journal from the event loop through its io_uring ring
/// (docs/DESIGN.md, "The journal"): the frames taken since the last write
/// become one `write` at the end of the active segment, and under `always`
/// an `fdatasync` linked to it completes before the publishes are answered. No thread
/// sits between a publish and the disk, and whatever arrives while a write
/// or sync is in flight goes out together in the next (group commit).
///
/// What blocks on the disk and happens rarely runs on a serial maintenance
/// queue, never on the loop: starting a new segment (a file and a
/// directory sync), cutting a failed write back (`ftruncate`), retention
/// (`unlink`). Used on the loop thread only.
final class JournalRingWriter {
    private enum State {
        /// Nothing in the kernel or on the maintenance queue.
        case idle
        /// `append` is being written; `written` bytes of it are done (a
        /// short write is continued, as `pwrite` callers do). Under
        /// `always` the sync is linked to the write in the kernel.
        case writing(JournalAppend, written: Int, syncLinked: Bool)
        /// The write fell short or failed, so its linked sync was cancelled:
        /// its completion comes next, then `next`.
        case awaitingCancelledSync(then: AfterCancelledSync)
        /// An `fdatasync` of `segment` is in flight; under `always` it
        /// confirms `confirming`, written and not yet answered.
        case syncing(JournalSegmentHandle, confirming: JournalAppend?)
        /// A new segment is being made, or a failed write cut back, on the
        /// maintenance queue; `.journalMaintained` ends it.
        case maintaining
    }

    private enum AfterCancelledSync {
        case continueWriting(JournalAppend, written: Int)
        case cutBack(JournalAppend)
    }

    let journal: Journal
    private let backend: FileWritingBackend
    private let inbox: Inbox
    private let maintenance = DispatchQueue(label: "secureops.journal-maintenance")
    private var state = State.idle
    /// Batches taken since the last write was issued, oldest first.
    private var pending: [JournalBatch] = []
    private var schedule: JournalSchedule
    private var health = JournalHealth.healthy
    private var retentionRunning = false

    init(journal: Journal, backend: FileWritingBackend, inbox: Inbox, now: UInt64) {
        self.journal = journal
        self.backend = backend
        self.inbox = inbox
        schedule = JournalSchedule(journal.configuration, now: now)
    }

    /// Frames taken into the broadcast ring, for the next write.
    func submit(_ batch: JournalBatch) {
        assert(pending.last.map { batch.firstSequence == $0.lastSequence + 1 } ?? true, "journal batches are consecutive")
        pending.append(batch)
    }

    /// When the loop must wake for this writer: a sync that falls due
    /// while nothing is in flight (otherwise the completion wakes it, and
    /// an overdue sync must not make the loop spin meanwhile), retention.
    var nextDeadline: UInt64 {
        let sync: UInt64 = if case .idle = state { schedule.nextSyncAt ?? .max } else { .max }
        return min(sync, retentionRunning ? .max : schedule.retentionDueAt)
    }

    /// Issues the next write, or a sync that fell due, when nothing is in
    /// flight; starts retention when due. Called every turn before the
    /// loop waits, so a turn's frames go out with that wait's submission.
    func issue(now: UInt64) {
        if !retentionRunning && now >= schedule.retentionDueAt { startRetention(now: now) }
        guard case .idle = state else { return }
        if !pending.isEmpty {
            if journal.activeSegmentIsFull {
                startRotation(firstSequence: pending[0].firstSequence)
                return
            }
            let append = journal.prepareAppend(pending)
            pending.removeAll(keepingCapacity: true)
            write(append, from: 0)
        } else if schedule.syncDue(now: now) {
            let segment = journal.activeSegment
            backend.syncFile(fd: segment.descriptor)
            state = .syncing(segment, confirming: nil)
        }
    }

    /// Writes `append` from byte `written` on; under `always` with the
    /// sync linked, so the kernel syncs without a turn of the loop between.
    private func write(_ append: JournalAppend, from written: Int) {
        let syncLinked = schedule.policy == .always
        let rest = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(append.bytes)[written...])
        backend.writeFile(fd: append.descriptor, bytes: rest, offset: append.offset + written, thenSync: syncLinked)
        state = .writing(append, written: written, syncLinked: syncLinked)
    }

    // MARK: - Completions (from the backend's wait)

    /// The write in flight completed; returns what to report.
    func writeCompleted(result: Int32, now: UInt64) -> JournalProgress? {
        guard case .writing(let append, let before, let syncLinked) = state else {
            preconditionFailure("a journal write completed with none in flight")
        }
        let written = before + max(0, Int(result))
        if result > 0 && written < append.bytes.count || result == -EINTR || result == -EAGAIN {
            if syncLinked {
                state = .awaitingCancelledSync(then: .continueWriting(append, written: written))
            } else {
                write(append, from: written)
            }
            return nil
        }
        guard written == append.bytes.count else {
            // Out of space (a write that makes no progress), or an error:
            // the part that reached the file is cut off before anything
            // else is written, and these records stay missing.
            let error = JournalError.io(SystemError("write", journal.path(ofSegment: append.segmentName), code: result < 0 ? -result : EIO))
            if syncLinked {
                state = .awaitingCancelledSync(then: .cutBack(append))
            } else {
                startCutBack(append)
            }
            return progress(through: append.sequences.upperBound, failed: [append.sequences], failure: error)
        }
        journal.appendWritten(append)
        schedule.wrote()
        if syncLinked {
            // Its sync is in the kernel already; it confirms the append.
            state = .syncing(journal.activeSegment, confirming: append)
            return nil
        }
        state = .idle
        if schedule.syncDue(now: now) {
            let segment = journal.activeSegment
            backend.syncFile(fd: segment.descriptor)
            state = .syncing(segment, confirming: nil)
        }
        return progress(through: append.sequences.upperBound, succeeded: true)
    }

    private func startCutBack(_ append: JournalAppend) {
        startMaintenance { journal in
            journal.appendFailed(append)
            return .cutBack
        }
    }

    /// The sync in flight completed; returns what to report.
    func syncCompleted(result: Int32, now: UInt64) -> JournalProgress? {
        if case .awaitingCancelledSync(let next) = state {
            assert(result == -ECANCELED, "a sync linked to a short write is cancelled, not \(result)")
            switch next {
            case .continueWriting(let append, let written): write(append, from: written)
            case .cutBack(let append): startCutBack(append)
            }
            return nil
        }
        guard case .syncing(let segment, let confirming) = state else {
            preconditionFailure("a journal sync completed with none in flight")
        }
        state = .idle
        schedule.syncFinished(succeeded: result == 0, now: now)
        let through = confirming?.sequences.upperBound ?? 0
        guard result == 0 else {
            // What `always` was about to confirm is not on the disk.
            let error = JournalError.io(SystemError("fdatasync", journal.path(ofSegment: segment.name), code: -result))
            return progress(through: through, failed: confirming.map { [$0.sequences] } ?? [], failure: error)
        }
        let wasFailing = health != .healthy
        let report = progress(through: through, succeeded: true)
        return confirming != nil || wasFailing ? report : nil
    }

    /// A maintenance job finished (its inbox message); returns what to
    /// report.
    func maintained(_ outcome: JournalMaintenance) -> JournalProgress? {
        switch outcome {
        case .retained(let dropped):
            retentionRunning = false
            guard !dropped.isEmpty else { return nil }
            var report = JournalProgress(through: 0, health: health)
            report.dropped = dropped
            return report
        case .cutBack:
            state = .idle
            return nil
        case .rotated(nil):
            state = .idle
            return nil
        case .rotated(let error?):
            // The frames waiting for the new segment cannot be written;
            // the next frames try again.
            state = .idle
            guard let last = pending.last?.lastSequence else { return nil }
            let failed = pending.map { $0.firstSequence...$0.lastSequence }
            pending.removeAll(keepingCapacity: true)
            return progress(through: last, failed: failed, failure: error)
        }
    }

    // MARK: - Shutdown

    /// Whether a write or sync is in the kernel (the loop keeps waiting).
    var hasOperationInFlight: Bool {
        switch state {
        case .writing, .syncing, .awaitingCancelledSync: true
        case .idle, .maintaining: false
        }
    }

    /// Once nothing is in the kernel: waits for the maintenance queue,
    /// then writes what is left and syncs everything, directly (the loop
    /// is stopping; nothing else waits on it). Returns what to report.
    func finishAfterOperations() -> JournalProgress? {
        precondition(!hasOperationInFlight, "the loop waits for the kernel's operations first")
        maintenance.sync {}
        state = .idle
        var report = JournalProgress(through: 0, health: health)
        var written: [ClosedRange<UInt64>] = []
        for batch in pending {
            do {
                try journal.append(batch)
                written.append(batch.firstSequence...batch.lastSequence)
            } catch {
                report.failed.append(batch.firstSequence...batch.lastSequence)
                report.failure = error
            }
            report.through = batch.lastSequence
        }
        pending.removeAll()
        do {
            try journal.sync()
        } catch {
            report.failure = error
            if schedule.policy == .always { report.failed += written }
        }
        health = health.after(failure: report.failure, succeeded: report.failure == nil)
        report.health = health
        return report.through > 0 || report.failure != nil ? report : nil
    }

    // MARK: - Maintenance

    private func startRotation(firstSequence: UInt64) {
        let syncOld = schedule.policy != .none
        startMaintenance { journal in
            do throws(JournalError) {
                try journal.rotate(firstSequence: firstSequence)
                // The segment rotated away from may hold writes of the last
                // interval; the loop syncs only the active one.
                if syncOld { try journal.sync() }
                return .rotated(nil)
            } catch {
                return .rotated(error)
            }
        }
    }

    private func startMaintenance(_ job: @escaping @Sendable (Journal) -> JournalMaintenance) {
        state = .maintaining
        let (journal, inbox) = (self.journal, self.inbox)
        maintenance.async { _ = inbox.post(.journalMaintained(job(journal))) }
    }

    private func startRetention(now: UInt64) {
        retentionRunning = true
        schedule.retentionRan(now: now)
        let (journal, inbox) = (self.journal, self.inbox)
        maintenance.async {
            let dropped = journal.enforceRetention(nowMilliseconds: SystemClock.realtimeMilliseconds())
            _ = inbox.post(.journalMaintained(.retained(dropped)))
        }
    }

    private func progress(
        through: UInt64, failed: [ClosedRange<UInt64>] = [], failure: JournalError? = nil, succeeded: Bool = false
    ) -> JournalProgress {
        health = health.after(failure: failure, succeeded: succeeded)
        var report = JournalProgress(through: through, health: health)
        report.failed = failed
        report.failure = failure
        return report
    }
}

/// What a maintenance job of the `JournalRingWriter` did.
enum JournalMaintenance: Sendable {
    /// A new segment was started (or could not be: why).
    case rotated(JournalError?)
    /// A failed write was cut off the active segment.
    case cutBack
    /// Retention ran and dropped these segments.
    case retained([DroppedSegment])
}
