/// Replies in request order, and work offloaded to the Dispatch pool
/// (docs/DESIGN.md, invariant 3; the bookkeeping is `ReplyQueue`).
extension EventLoop {
    /// Queues `bytes` as the reply to `requestID`. Returns false when the
    /// connection reads no further frames.
    @discardableResult
    func deliver(
        _ bytes: UnsafeRawBufferPointer, to connection: Connection, requestID: UInt64,
        subscribeAt: UInt64?, closeAfterwards: Bool
    ) -> Bool {
        if connection.replies.canReleaseAtOnce {
            release(bytes, to: connection, subscribeAt: subscribeAt, closeAfterwards: closeAfterwards)
        } else {
            connection.replies.holdBack(PendingReply(
                requestID: requestID, ready: true, bytes: Array(bytes),
                subscribeAt: subscribeAt, closeAfterwards: closeAfterwards))
        }
        return !closeAfterwards
    }

    /// Replies with an error frame written by the handler's vocabulary.
    func replyWithError(_ message: String, to connection: Connection, requestID: UInt64, closeAfterwards: Bool = false) -> Bool {
        scratch.reset()
        dispatcher.writeError(message, into: &scratch)
        return scratch.bytes.withUnsafeBytes {
            deliver($0, to: connection, requestID: requestID, subscribeAt: nil, closeAfterwards: closeAfterwards)
        }
    }

    private func release(_ bytes: UnsafeRawBufferPointer, to connection: Connection, subscribeAt: UInt64?, closeAfterwards: Bool) {
        appendOutput(bytes, to: connection)
        if let subscribeAt { activateSubscription(connection, cursor: subscribeAt) }
        if closeAfterwards {
            removeSubscriber(connection)
            beginDrain(connection, reason: .closedByHandler)
        }
    }

    func appendOutput(_ bytes: UnsafeRawBufferPointer, to connection: Connection) {
        guard connection.state == .open || connection.state == .draining, bytes.count > 0 else { return }
        let output: OutputBuffer
        if let existing = connection.output {
            output = existing
        } else {
            output = outputBuffers.take()
            connection.output = output
        }
        output.append(bytes)
        queueFlush(connection)
        pauseReadingIfOverLimits(connection)
    }

    @inline(__always)
    func queueFlush(_ connection: Connection) {
        guard !connection.queuedForFlush else { return }
        connection.queuedForFlush = true
        flushQueue.append(connection)
    }

    // MARK: - Offloading

    /// Runs `work` on the Dispatch pool; its reply comes back through the
    /// inbox and leaves in request order. A connection's offloaded work
    /// runs one at a time, in request order: one client cannot occupy the
    /// whole pool, and work that has not started yet sees every effect of
    /// the work before it (a policy reload, say).
    func offload(_ work: @escaping @Sendable () throws -> OffloadedReply, for connection: Connection, requestID: UInt64) -> Bool {
        counters.offloadsInFlight.add(1, ordering: .relaxed)
        if let startNow = connection.replies.offload(work, requestID: requestID) {
            startOffload(startNow, for: connection.id)
        }
        pauseReadingIfOverLimits(connection)
        return true
    }

    private func startOffload(_ offload: StartableOffload, for id: ConnectionID) {
        let inbox = self.inbox
        offloadQueue.async {
            let outcome: OffloadOutcome
            do {
                outcome = .reply(try offload.cancellation.whileCurrent(offload.work))
            } catch {
                outcome = .failed(describe(error))
            }
            inbox.post(.offloadFinished(id, requestID: offload.requestID, reply: outcome))
        }
    }

    func offloadFinished(_ id: ConnectionID, requestID: UInt64, outcome: OffloadOutcome) {
        counters.offloadsInFlight.add(-1, ordering: .relaxed)
        guard let connection = connections.lookup(id),
              connection.state == .open || connection.state == .draining
        else { return }
        let bytes: [UInt8]
        let closeAfterwards: Bool
        switch outcome {
        case .reply(let reply):
            bytes = reply.bytes
            closeAfterwards = reply.closeAfterwards
        case .failed(let message):
            scratch.reset()
            dispatcher.writeError(message, into: &scratch)
            bytes = scratch.bytes
            closeAfterwards = false
        }
        let (released, next) = connection.replies.finish(requestID, bytes: bytes, closeAfterwards: closeAfterwards)
        if let next { startOffload(next, for: id) }
        releaseHeld(released, to: connection)
    }

    /// Replies that waited (for an offload or the journal) and may leave
    /// now, in order; then the connection may read again, or finish its
    /// drain.
    func releaseHeld(_ released: ArraySlice<PendingReply>, to connection: Connection) {
        for reply in released {
            reply.bytes.withUnsafeBytes {
                release($0, to: connection, subscribeAt: reply.subscribeAt, closeAfterwards: reply.closeAfterwards)
            }
        }
        resumeReadingIfBelowLimits(connection)
        checkDrainComplete(connection)
    }
}

extension EventLoop {
    /// The grace period is over and `connection` still waits for offloaded
    /// work: the work is told to stop (`OffloadCancellation`), and the client
    /// gets, in request order, every reply that was ready and an error frame
    /// for each request that was not, instead of a bare end of stream.
    func abandonOffloads(of connection: Connection) {
        guard connection.replies.unanswered > 0 else { return }
        let grace = configuration.shutdownGracePeriod
        scratch.reset()
        dispatcher.writeError("shutting down: this request did not finish within the \(grace) grace period and was abandoned", into: &scratch)
        let (released, neverStarted, abandoned) = connection.replies.abandonOffloads(errorFrame: scratch.bytes)
        if neverStarted > 0 { counters.offloadsInFlight.add(-neverStarted, ordering: .relaxed) }
        logger.warning("offloaded work did not finish within the shutdown grace period; told to stop and answered with an error", metadata: [
            "connection": "\(connection.id)", "peer": "\(connection.peer)", "request": "\(abandoned.map(String.init) ?? "none")",
            "neverStarted": "\(neverStarted)", "gracePeriod": "\(grace)",
        ])
        for reply in released {
            reply.bytes.withUnsafeBytes { appendOutput($0, to: connection) }
        }
    }
}

/// What came back from the Dispatch pool.
enum OffloadOutcome: Sendable {
    case reply(OffloadedReply)
    case failed(String)
}
