import SecureOpsJournal

/// A subscriber behind the ring (`since` older than what memory retains,
/// typically after a restart) is served from the journal: frames are read
/// on the pool, a batch at a time, and queued like replies; ring frames
/// follow once it has caught up. The loop never reads the disk, and one
/// subscriber holds at most one batch read and one batch queued.
extension EventLoop {
    /// Bytes of frames one read brings in.
    static let journalReplayBatchBytes = 256 << 10

    /// Starts (or keeps waiting for) a journal read for `connection`, whose
    /// cursor is below the ring. False when the journal cannot help (none,
    /// or it holds nothing older than the ring): the subscriber lagged.
    func replayFromJournal(_ connection: Connection) -> Bool {
        switch connection.journalReplay {
        case .reading: return true
        case .unavailable:
            connection.journalReplay = .idle
            return false
        case .idle: break
        }
        guard let journal = configuration.journal, journal.firstSequence < broadcast.firstSequence else { return false }
        connection.journalReplay = .reading
        let (id, from, before) = (connection.id, connection.cursor, broadcast.firstSequence)
        let inbox = self.inbox
        let maxBytes = Self.journalReplayBatchBytes
        offloadQueue.async {
            let outcome: JournalReadOutcome
            do {
                let records = try journal.records(from: from, maxCount: 4096, maxBytes: maxBytes).prefix { $0.sequence < before }
                outcome = .records(Array(records))
            } catch {
                outcome = .failed("\(error)")
            }
            inbox.post(.journalRead(id, from: from, outcome))
        }
        return true
    }

    /// A journal read came back: its frames go out in order after what is
    /// queued; a gap in the journal (retention, a failed write) is a lag
    /// notice like any other.
    func journalRead(_ id: ConnectionID, from: UInt64, outcome: JournalReadOutcome) {
        guard let connection = connections.lookup(id), connection.journalReplay == .reading else { return }
        connection.journalReplay = .idle
        guard connection.isSubscribed, connection.state == .open || connection.state == .draining else { return }
        assert(connection.cursor == from, "the cursor moved while the journal was read")
        switch outcome {
        case .failed(let message):
            logger.error("reading the journal for a subscriber failed; it skips to the ring", metadata: [
                "connection": "\(connection.id)", "from": "\(from)", "error": "\(message)",
            ])
            connection.journalReplay = .unavailable
        case .records(let records):
            guard let first = records.first else {
                connection.journalReplay = .unavailable
                break
            }
            if first.sequence > connection.cursor {
                // Not in the journal: as if the subscriber had lagged there.
                scratch.reset()
                dispatcher.writeLagNotice(skipped: first.sequence - connection.cursor, resumeAt: first.sequence, into: &scratch)
                counters.lagEvents.add(1, ordering: .relaxed)
                scratch.bytes.withUnsafeBytes { appendOutput($0, to: connection) }
            }
            for record in records {
                record.payload.withUnsafeBytes { appendOutput($0, to: connection) }
            }
            connection.cursor = records[records.count - 1].sequence + 1
        }
        // More from the journal, the ring, or (after a read that brought
        // nothing) the lag notice: the next send decides.
        queueFlush(connection)
    }
}

/// What a journal read for a subscriber brought.
enum JournalReadOutcome: Sendable {
    case records([JournalRecord])
    case failed(String)
}
