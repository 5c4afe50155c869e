import Glibc

/// Sending: one send in flight per connection, gathering its queued
/// replies and, for a subscriber, the broadcast frames from its cursor to
/// the head (docs/DESIGN.md, invariants 4 and 6). More than one send in
/// flight on a stream socket could reorder bytes; fewer than one per loop
/// turn would leave subscribers idle.
extension EventLoop {
    // MARK: - Subscriptions

    func activateSubscription(_ connection: Connection, cursor: UInt64) {
        guard connection.state == .open || connection.state == .draining else { return }
        connection.cursor = cursor
        subscribers.add(connection)
        counters.subscribers.store(subscribers.count, ordering: .relaxed)
        if cursor < sendableEnd { queueFlush(connection) }
    }

    /// Ends a subscription the handler no longer allows: no frame after
    /// this one, then `message` as an error frame, in order after every
    /// reply already due (a subscription still waiting behind an offloaded
    /// reply never starts). The connection stays open.
    func endSubscription(_ connection: Connection, message: String) {
        removeSubscriber(connection)
        connection.replies.cancelPendingSubscriptions()
        _ = replyWithError(message, to: connection, requestID: connection.replies.takeRequestID())
    }

    func removeSubscriber(_ connection: Connection) {
        guard connection.isSubscribed else { return }
        subscribers.remove(connection)
        counters.subscribers.store(subscribers.count, ordering: .relaxed)
    }

    /// After new frames arrived: every subscriber without a send in flight
    /// gets one covering everything it has not received. Subscribers with a
    /// send in flight continue from its completion.
    func scheduleSubscriberSends() {
        broadcastAdvanced = false
        let head = sendableEnd
        for subscriber in subscribers.list where subscriber.send == nil && subscriber.cursor < head {
            startSend(subscriber)
        }
    }

    func flushQueuedConnections() {
        guard !flushQueue.isEmpty else { return }
        for connection in flushQueue {
            connection.queuedForFlush = false
            if connection.send == nil { startSend(connection) }
        }
        flushQueue.removeAll(keepingCapacity: true)
    }

    // MARK: - Sends

    private func startSend(_ connection: Connection) {
        guard connection.state == .open || connection.state == .draining, connection.send == nil else { return }
        let operation = sendOperations.take()
        if let output = connection.output, output.count > 0 {
            operation.add(output)
            connection.output = nil
        }
        let head = sendableEnd
        if connection.isSubscribed && connection.cursor < head {
            if connection.cursor < broadcast.firstSequence && !replayFromJournal(connection) {
                lagged(connection, operation: operation)
            }
            if connection.isSubscribed && connection.journalReplay != .reading && connection.cursor >= broadcast.firstSequence {
                let budget = max(1, limits.maxBytesPerSend - operation.remainingBytes)
                let end = min(broadcast.sendEnd(from: connection.cursor, maxBytes: budget), head)
                broadcast.forEachRange(from: connection.cursor, to: end) { chunk, range in
                    // Frames never span chunks and a send covers at most
                    // maxBytesPerSend ≤ chunkSize/4, so two ranges suffice.
                    precondition(operation.hasRoom, "a send needs more iovecs than it has")
                    operation.add(chunk, range: range)
                    return true
                }
                connection.cursor = end
            }
        }
        if operation.isEmpty {
            sendOperations.recycle(operation, buffers: outputBuffers)
            if connection.state == .draining { checkDrainComplete(connection) }
            return
        }
        connection.send = operation
        connection.sendStartedAt = now
        backend.send(operation, for: connection.id, fd: connection.fd)
    }

    /// The subscriber's cursor fell below the oldest retained frame: tell it
    /// exactly how many frames it missed and where it resumes, then skip
    /// ahead or cut it off, per `onLag`.
    private func lagged(_ connection: Connection, operation: SendOperation) {
        let skipped = broadcast.firstSequence - connection.cursor
        let resumeAt = broadcast.firstSequence
        counters.lagEvents.add(1, ordering: .relaxed)
        scratch.reset()
        dispatcher.writeLagNotice(skipped: skipped, resumeAt: resumeAt, into: &scratch)
        let notice = outputBuffers.take()
        scratch.bytes.withUnsafeBytes { notice.append($0) }
        operation.add(notice)
        connection.cursor = resumeAt
        logAboutPeer(.lagged, connection) {
            logger.notice("subscriber lagged", metadata: [
                "connection": "\(connection.id)", "peer": "\(connection.peer)",
                "skipped": "\(skipped)", "resumeAt": "\(resumeAt)", "onLag": "\(limits.onLag.rawValue)",
            ])
        }
        if limits.onLag == .disconnect {
            removeSubscriber(connection)
            beginDrain(connection, reason: .lagged)
        }
    }

    func sendCompleted(_ id: ConnectionID, result: Int32) {
        guard let connection = connections.lookup(id) else { return }
        guard let operation = connection.send else {
            preconditionFailure("a send completed for connection \(id), which has none in flight")
        }
        if result < 0 {
            connection.send = nil
            sendOperations.recycle(operation, buffers: outputBuffers)
            if connection.state == .closing {
                finalizeIfIdle(connection)
            } else {
                connection.closeReason = (result == -EPIPE || result == -ECONNRESET) ? .peerClosed : .sendFailed(-result)
                beginClose(connection)
            }
            return
        }
        precondition(Int(result) <= operation.remainingBytes, "the kernel reports more bytes sent than were asked")
        if !operation.advance(by: Int(result)) && connection.state != .closing {
            // Partial send: continue from where the kernel stopped, with the
            // same iovecs (and the same frame references). The deadline
            // stays where it was: it is for the whole send.
            backend.send(operation, for: connection.id, fd: connection.fd)
            return
        }
        connection.send = nil
        sendOperations.recycle(operation, buffers: outputBuffers)
        switch connection.state {
        case .closing, .closed:
            finalizeIfIdle(connection)
        case .open, .draining:
            if (connection.output?.count ?? 0) > 0
                || (connection.isSubscribed && connection.cursor < sendableEnd) {
                startSend(connection)
            }
            resumeReadingIfBelowLimits(connection)
            checkDrainComplete(connection)
        }
    }
}
