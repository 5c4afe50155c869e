import Glibc

/// Reading from connections: receives, framing, back-pressure, a peer's
/// end of stream.
extension EventLoop {
    // MARK: - Receiving

    func armReceive(_ connection: Connection) {
        guard connection.receive == .idle else { return }
        backend.armReceive(connection.id, fd: connection.fd)
        connection.receive = .armed
    }

    func cancelReceive(_ connection: Connection) {
        guard connection.receive == .armed else { return }
        backend.cancelReceive(connection.id, fd: connection.fd)
        connection.receive = .cancelling
    }

    /// Re-arms receives that ended. Receives that ended because every
    /// shared buffer was taken are re-armed a few at a time, in the order
    /// they starved: re-arming thousands at once while buffers are still
    /// scarce would only make the kernel fail them all again.
    func rearmReceives() {
        if !receiveRearmQueue.isEmpty {
            for connection in receiveRearmQueue { rearmIfWanted(connection) }
            receiveRearmQueue.removeAll(keepingCapacity: true)
        }
        for _ in 0..<backend.rearmBatchAfterStarvation {
            guard let connection = starvedReceives.popFirst() else { break }
            rearmIfWanted(connection)
        }
    }

    private func rearmIfWanted(_ connection: Connection) {
        if connection.state == .open && connection.readState == .reading { armReceive(connection) }
    }

    func received(_ id: ConnectionID, _ bytes: UnsafeRawBufferPointer) {
        guard let connection = connections.lookup(id) else { return }
        switch connection.readState {
        case .reading:
            // Lines are decoded straight out of the backend's buffer; only
            // a partial tail is copied, so the buffer can go back at once.
            assert(connection.heldInput.isEmpty, "held input is handled before reading resumes")
            consume(bytes, from: connection)
        case .paused:
            // Arrived before the cancel took effect: kept, in order.
            connection.heldInput.append(contentsOf: bytes)
        case .stopped:
            if connection.drainInputWhenReceiveEnds { consume(bytes, from: connection) }
        }
    }

    func receiveEnded(_ id: ConnectionID, _ end: ReceiveEnd) {
        guard let connection = connections.lookup(id) else { return }
        assert(connection.receive != .idle, "a receive ended that was never armed")
        connection.receive = .idle
        switch end {
        case .endOfStream:
            onPeerEndOfStream(connection)
        case .starved:
            counters.receiveBufferExhaustions.add(1, ordering: .relaxed)
        case .failed(let code):
            if connection.state == .open || connection.state == .draining {
                connection.closeReason = code == ECONNRESET ? .peerClosed : .receiveFailed(code)
                beginClose(connection)
            }
        case .interrupted, .cancelled:
            break
        }
        switch connection.state {
        case .open:
            if end == .starved {
                starvedReceives.append(connection)
            } else if end != .endOfStream && connection.readState == .reading {
                receiveRearmQueue.append(connection)
            }
        case .draining:
            if connection.drainInputWhenReceiveEnds {
                connection.drainInputWhenReceiveEnds = false
                if end != .endOfStream { readRemainingInput(connection) }
            }
            checkDrainComplete(connection)
        case .closing:
            finalizeIfIdle(connection)
        case .closed:
            break
        }
    }

    /// Splits `bytes` into frames and dispatches them in order, until the
    /// connection goes over its limits: what follows is held, unread, until
    /// it drains (a burst of requests in one read costs no more than the
    /// limits allow, however many it holds).
    func consume(_ bytes: UnsafeRawBufferPointer, from connection: Connection) {
        let outcome = connection.framer.consume(bytes) { frame in
            counters.framesReceived.add(1, ordering: .relaxed)
            guard dispatcher.dispatch(frame: frame, connection: connection, loop: self) else { return .stop }
            if case .paused = connection.readState { return .pause }
            return connection.isOverLimits(limits) ? .pause : .proceed
        }
        if case .paused(let resumeAt) = outcome {
            if resumeAt < bytes.count {
                connection.heldInput.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[resumeAt...]))
            }
            pauseReading(connection)
        }
        // Time an unfinished frame from its first byte (see housekeeping).
        if connection.framer.carry.isEmpty {
            connection.frameStartedAt = 0
        } else if connection.frameStartedAt == 0 {
            connection.frameStartedAt = now
        }
        if outcome == .frameTooLarge {
            counters.oversizedFrames.add(1, ordering: .relaxed)
            closeWithError(
                "frame exceeds the \(connection.framer.maxFrameBytes)-byte limit; closing the connection",
                connection, reason: .frameTooLarge)
        }
    }

    /// The peer shut down its side. If it is gone entirely, nothing more can
    /// reach it: close. If it only half-closed (it may still read), answer
    /// what it sent and then close — or, for a subscriber, keep streaming
    /// until it hangs up.
    private func onPeerEndOfStream(_ connection: Connection) {
        guard connection.state == .open else { return }
        var poller = pollfd(fd: connection.fd, events: 0, revents: 0)
        _ = poll(&poller, 1, 0)
        if poller.revents & Int16(POLLHUP) != 0 || poller.revents & Int16(POLLERR) != 0 {
            connection.closeReason = .peerClosed
            beginClose(connection)
        } else if case .paused = connection.readState {
            // What it sent before is still to be handled: end once it is.
            connection.readState = .paused(peerFinished: true)
        } else {
            peerFinishedSending(connection)
        }
    }

    /// Everything the peer sent before its half-close has been handled: a
    /// subscriber keeps streaming until it hangs up; anyone else gets its
    /// replies, then the connection closes.
    func peerFinishedSending(_ connection: Connection) {
        if connection.isSubscribed && connection.replies.unanswered == 0 {
            connection.readState = .stopped
            armHangupWatch(connection)
        } else {
            beginDrain(connection, reason: .peerClosed)
        }
    }

    private func armHangupWatch(_ connection: Connection) {
        guard connection.hangupWatch == .idle else { return }
        backend.armHangup(connection.id, fd: connection.fd)
        connection.hangupWatch = .armed
    }

    func hangupCompleted(_ id: ConnectionID, result: Int32) {
        guard let connection = connections.lookup(id) else { return }
        assert(connection.hangupWatch != .idle, "a hang-up watch completed that was never armed")
        connection.hangupWatch = .idle
        if connection.state == .closing {
            finalizeIfIdle(connection)
        } else if result != -ECANCELED {
            connection.closeReason = .peerClosed
            beginClose(connection)
        }
    }

    /// At shutdown, after the armed receive ended: reads what the kernel
    /// already holds for this socket and answers it.
    func readRemainingInput(_ connection: Connection) {
        var budget = 1 << 20
        withUnsafeTemporaryAllocation(byteCount: 16 << 10, alignment: 16) { buffer in
            // Not past the limits: held input is not handled while draining.
            while budget > 0 && connection.heldInput.isEmpty {
                let n = recv(connection.fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                guard n > 0 else { return }
                budget -= n
                consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), from: connection)
            }
        }
    }

    // MARK: - Back-pressure

    /// Stops reading requests from a connection whose replies pile up;
    /// the kernel's socket buffer then pushes back on the client.
    func pauseReadingIfOverLimits(_ connection: Connection) {
        if connection.isOverLimits(limits) { pauseReading(connection) }
    }

    private func pauseReading(_ connection: Connection) {
        guard connection.readState == .reading, connection.state == .open else { return }
        connection.readState = .paused(peerFinished: false)
        counters.readingPaused.add(1, ordering: .relaxed)
        cancelReceive(connection)
    }

    /// Once its replies and offloaded requests are below half their limits:
    /// handles what was held back, then reads again (or, if the peer
    /// finished sending meanwhile, ends as on end of stream).
    func resumeReadingIfBelowLimits(_ connection: Connection) {
        guard case .paused(let peerFinished) = connection.readState, connection.state == .open else { return }
        guard connection.pendingOutputBytes <= limits.maxPendingOutputBytes / 2,
              connection.replies.unanswered < max(1, limits.maxPendingRequests / 2) else { return }
        connection.readState = .reading
        counters.readingPaused.add(-1, ordering: .relaxed)
        if !connection.heldInput.isEmpty {
            let held = connection.heldInput
            connection.heldInput = []
            held.withUnsafeBytes { consume($0, from: connection) }
        }
        guard connection.readState == .reading, connection.state == .open else {
            if peerFinished, case .paused = connection.readState { connection.readState = .paused(peerFinished: true) }
            return
        }
        if peerFinished {
            peerFinishedSending(connection)
        } else if connection.receive == .idle {
            receiveRearmQueue.append(connection)
        }
    }

    /// Reads nothing more (a paused connection's held input is dropped: it
    /// is closing).
    func leaveReadState(_ connection: Connection) {
        if case .paused = connection.readState { counters.readingPaused.add(-1, ordering: .relaxed) }
        connection.readState = .stopped
    }
}
