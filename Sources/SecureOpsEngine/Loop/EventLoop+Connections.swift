import CURing
import Glibc

/// Reading from connections and closing them.
extension EventLoop {
    // MARK: - Receiving

    func armReceive(_ connection: Connection) {
        guard !connection.receiveArmed else { return }
        let sqe = ring.nextSubmission()
        io_uring_prep_recv_multishot(sqe, connection.fd, nil, 0, 0)
        sqe.pointee.flags |= CU_IOSQE_BUFFER_SELECT
        sqe.pointee.buf_group = UInt16(receiveBuffers.group)
        sqe.pointee.user_data = connection.tag(.receive).userData
        connection.receiveArmed = true
    }

    /// Re-arms receives that ended. Receives that ended because every
    /// shared buffer was taken (`-ENOBUFS`) are re-armed a few at a time, in
    /// the order they starved: re-arming thousands at once while buffers are
    /// still scarce would only make the kernel fail them all again.
    func rearmReceives() {
        if !receiveRearmQueue.isEmpty {
            for connection in receiveRearmQueue { rearmIfWanted(connection) }
            receiveRearmQueue.removeAll(keepingCapacity: true)
        }
        guard starvedHead < starvedReceives.count else { return }
        let batch = max(1, receiveBuffers.count / 2)
        let end = min(starvedReceives.count, starvedHead + batch)
        for index in starvedHead..<end { rearmIfWanted(starvedReceives[index]) }
        starvedHead = end
        if starvedHead == starvedReceives.count {
            starvedReceives.removeAll(keepingCapacity: true)
            starvedHead = 0
        } else if starvedHead > 4096 && starvedHead * 2 > starvedReceives.count {
            starvedReceives.removeFirst(starvedHead)
            starvedHead = 0
        }
    }

    private func rearmIfWanted(_ connection: Connection) {
        if connection.state == .open && connection.readState == .reading && !connection.receiveArmed {
            armReceive(connection)
        }
    }

    func onReceive(_ connection: Connection, result: Int32, flags: UInt32) {
        let more = flags & CU_CQE_F_MORE != 0
        if !more { connection.receiveArmed = false }
        if result > 0 {
            let id = UInt16(truncatingIfNeeded: flags >> CU_CQE_BUFFER_SHIFT)
            let bytes = receiveBuffers.bytes(id: id, length: Int(result))
            switch connection.readState {
            case .reading:
                // Lines are decoded straight out of the kernel's buffer; only
                // a partial tail is copied, so the buffer can go back at once.
                assert(connection.heldInput.isEmpty, "held input is handled before reading resumes")
                consume(bytes, from: connection)
            case .paused:
                // Arrived before the cancel took effect: kept, in order.
                connection.heldInput.append(contentsOf: bytes)
            case .stopped:
                if connection.drainInputWhenReceiveEnds { consume(bytes, from: connection) }
            }
            receiveBuffers.recycle(id: id)
        } else if result == 0 {
            onPeerEndOfStream(connection)
        } else if result == -ENOBUFS {
            // Every shared buffer is in use: this connection's multishot
            // receive ended. Buffers are back by the end of this turn.
            counters.receiveBufferExhaustions.add(1, ordering: .relaxed)
        } else if result != -ECANCELED {
            if connection.state != .closing {
                connection.closeReason = (result == -ECONNRESET) ? .peerClosed : .receiveFailed(-result)
                beginClose(connection)
            }
        }
        if !connection.receiveArmed {
            afterReceiveEnded(connection, endOfStream: result == 0, starved: result == -ENOBUFS)
        }
    }

    private func afterReceiveEnded(_ connection: Connection, endOfStream: Bool, starved: Bool) {
        switch connection.state {
        case .open:
            if starved {
                starvedReceives.append(connection)
            } else if !endOfStream && connection.readState == .reading {
                receiveRearmQueue.append(connection)
            }
        case .draining:
            if connection.drainInputWhenReceiveEnds {
                connection.drainInputWhenReceiveEnds = false
                if !endOfStream { readRemainingInput(connection) }
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
    private func peerFinishedSending(_ connection: Connection) {
        if connection.isSubscribed && connection.outstandingOffloads == 0 {
            connection.readState = .stopped
            armHangupPoll(connection)
        } else {
            beginDrain(connection, reason: .peerClosed)
        }
    }

    private func armHangupPoll(_ connection: Connection) {
        guard !connection.hangupPollArmed else { return }
        let sqe = ring.nextSubmission()
        io_uring_prep_poll_add(sqe, connection.fd, UInt32(POLLHUP | POLLERR))
        sqe.pointee.user_data = connection.tag(.hangupPoll).userData
        connection.hangupPollArmed = true
    }

    func onHangup(_ connection: Connection, result: Int32) {
        connection.hangupPollArmed = false
        if connection.state == .closing {
            finalizeIfIdle(connection)
        } else if result != -ECANCELED {
            connection.closeReason = .peerClosed
            beginClose(connection)
        }
    }

    /// At shutdown, after the armed receive ended: reads what the kernel
    /// already holds for this socket and answers it.
    private func readRemainingInput(_ connection: Connection) {
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

    /// Answers with one error frame (in request order), reads nothing more
    /// and closes once the error has been sent.
    func closeWithError(_ message: String, _ connection: Connection, reason: CloseReason) {
        guard connection.state == .open else { return }
        connection.closeReason = reason
        _ = replyWithError(message, to: connection, requestID: connection.nextRequestID, closeAfterwards: true)
        connection.nextRequestID += 1
        // An earlier offloaded reply may hold the error in the queue; stop
        // reading now all the same, so nothing after the bad frame is parsed.
        if connection.state == .open {
            connection.readState = .stopped
            connection.heldInput = []
            if connection.receiveArmed { cancel(connection.tag(.receive).userData) }
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
        if connection.receiveArmed { cancel(connection.tag(.receive).userData) }
    }

    /// Once its replies and offloaded requests are below half their limits:
    /// handles what was held back, then reads again (or, if the peer
    /// finished sending meanwhile, ends as on end of stream).
    func resumeReadingIfBelowLimits(_ connection: Connection) {
        guard case .paused(let peerFinished) = connection.readState, connection.state == .open else { return }
        guard connection.pendingOutputBytes <= limits.maxPendingOutputBytes / 2,
              connection.outstandingOffloads < max(1, limits.maxPendingRequests / 2) else { return }
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
        } else if !connection.receiveArmed {
            receiveRearmQueue.append(connection)
        }
    }

    // MARK: - Closing

    /// Reads nothing more; closes once every reply (and, when the engine is
    /// shutting down, every queued frame) has been sent.
    func beginDrain(_ connection: Connection, reason: CloseReason) {
        guard connection.state == .open else { return }
        connection.state = .draining
        if connection.closeReason == nil { connection.closeReason = reason }
        leaveReadState(connection)
        if connection.receiveArmed {
            cancel(connection.tag(.receive).userData)
        } else if connection.drainInputWhenReceiveEnds {
            connection.drainInputWhenReceiveEnds = false
            readRemainingInput(connection)
        }
        if connection.hangupPollArmed { cancel(connection.tag(.hangupPoll).userData) }
        checkDrainComplete(connection)
    }

    func checkDrainComplete(_ connection: Connection) {
        guard connection.state == .draining,
              !connection.receiveArmed,
              connection.outstandingOffloads == 0,
              connection.orderedReplies.isEmpty,
              connection.send == nil,
              (connection.output?.count ?? 0) == 0,
              !connection.isSubscribed || connection.cursor >= broadcast.nextSequence
        else { return }
        beginClose(connection)
    }

    /// Reads nothing more (a paused connection's held input is dropped: it
    /// is closing).
    private func leaveReadState(_ connection: Connection) {
        if case .paused = connection.readState { counters.readingPaused.add(-1, ordering: .relaxed) }
        connection.readState = .stopped
    }

    /// Cancels everything in flight; the socket closes once the last
    /// completion has been reaped (`close()` alone would not stop an armed
    /// multishot receive).
    func beginClose(_ connection: Connection) {
        guard connection.state == .open || connection.state == .draining else { return }
        connection.state = .closing
        leaveReadState(connection)
        if connection.isSubscribed { removeSubscriber(connection) }
        if connection.operationsInFlight {
            cancelAll(fd: connection.fd)
        } else {
            finalize(connection)
        }
    }

    /// Reads and drops what the peer sent and we will never answer: closing
    /// a Unix socket with unread data makes the peer's next read fail with
    /// ECONNRESET instead of returning our last reply and then end-of-file.
    func discardPendingInput(_ fd: Int32) {
        withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 16) { buffer in
            var rounds = 0
            while rounds < 64 && recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT)) > 0 {
                rounds += 1
            }
        }
    }

    func finalizeIfIdle(_ connection: Connection) {
        if connection.state == .closing && !connection.operationsInFlight {
            finalize(connection)
        }
    }

    private func finalize(_ connection: Connection) {
        precondition(connection.state == .closing, "finalize twice or before close")
        connection.state = .closed
        discardPendingInput(connection.fd)
        Glibc.close(connection.fd)
        if let output = connection.output {
            outputBuffers.recycle(output)
            connection.output = nil
        }
        connection.orderedReplies.removeAll()
        if !connection.waitingOffloads.isEmpty {
            // Never started, so they will never report back.
            counters.offloadsInFlight.add(-connection.waitingOffloads.count, ordering: .relaxed)
            connection.waitingOffloads.removeAll()
        }
        releaseSlot(connection)
        let reason = connection.closeReason ?? .peerClosed
        logger.trace("connection closed", metadata: ["connection": "\(connection.id)", "reason": "\(reason)"])
        switch reason {
        case .lagged: counters.lagDisconnects.add(1, ordering: .relaxed)
        default: break
        }
        dispatcher.connectionClosed(connection.info, reason: reason)
    }
}
