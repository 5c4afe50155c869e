import Glibc

/// Closing connections: draining what is due, cancelling what the backend
/// holds, closing the socket once the last operation has come back.
extension EventLoop {
    /// Answers with one error frame (in request order), reads nothing more
    /// and closes once the error has been sent.
    func closeWithError(_ message: String, _ connection: Connection, reason: CloseReason) {
        guard connection.state == .open else { return }
        connection.closeReason = reason
        _ = replyWithError(message, to: connection, requestID: connection.replies.takeRequestID(), closeAfterwards: true)
        // An earlier offloaded reply may hold the error in the queue; stop
        // reading now all the same, so nothing after the bad frame is parsed.
        if connection.state == .open {
            leaveReadState(connection)
            connection.heldInput = []
            cancelReceive(connection)
        }
    }

    /// Reads nothing more; closes once every reply (and, when the engine is
    /// shutting down, every queued frame) has been sent.
    func beginDrain(_ connection: Connection, reason: CloseReason) {
        guard connection.state == .open else { return }
        connection.state = .draining
        if connection.closeReason == nil { connection.closeReason = reason }
        leaveReadState(connection)
        if connection.receive == .armed {
            cancelReceive(connection)
        } else if connection.receive == .idle && connection.drainInputWhenReceiveEnds {
            connection.drainInputWhenReceiveEnds = false
            readRemainingInput(connection)
        }
        if connection.hangupWatch == .armed {
            backend.cancelHangup(connection.id, fd: connection.fd)
            connection.hangupWatch = .cancelling
        }
        checkDrainComplete(connection)
    }

    func checkDrainComplete(_ connection: Connection) {
        guard connection.state == .draining,
              connection.receive == .idle,
              connection.replies.outstandingOffloads == 0,
              connection.replies.isEmpty,
              connection.send == nil,
              (connection.output?.count ?? 0) == 0,
              !connection.isSubscribed || connection.cursor >= sendableEnd
        else { return }
        beginClose(connection)
    }

    /// Cancels everything in flight; the socket closes once the last
    /// completion has come back (`close()` alone would not stop an armed
    /// multishot receive).
    func beginClose(_ connection: Connection) {
        guard connection.state == .open || connection.state == .draining else { return }
        connection.state = .closing
        leaveReadState(connection)
        removeSubscriber(connection)
        if connection.operationsInFlight {
            backend.cancelAll(connection.id, fd: connection.fd)
            if connection.receive == .armed { connection.receive = .cancelling }
            if connection.hangupWatch == .armed { connection.hangupWatch = .cancelling }
        } else {
            finalize(connection)
        }
    }

    /// At the end of the shutdown's grace period, right before the close:
    /// what is queued goes out now with one non-blocking send, as far as
    /// the socket takes it. Only with no send in flight, which would go out
    /// after it and so reorder the stream.
    func sendOutputNow(_ connection: Connection) {
        guard connection.send == nil, let output = connection.output, output.count > 0 else { return }
        _ = Glibc.send(connection.fd, output.base, output.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
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
        precondition(!connection.operationsInFlight, "closing a socket the backend still holds operations on")
        connection.state = .closed
        discardPendingInput(connection.fd)
        backend.release(fd: connection.fd)
        Glibc.close(connection.fd)
        if let output = connection.output {
            outputBuffers.recycle(output)
            connection.output = nil
        }
        let neverStarted = connection.replies.discard()
        if neverStarted > 0 {
            // Queued behind the running one, so they will never report back.
            counters.offloadsInFlight.add(-neverStarted, ordering: .relaxed)
        }
        connections.remove(connection)
        counters.connections.store(connections.count, ordering: .relaxed)
        let reason = connection.closeReason ?? .peerClosed
        logger.trace("connection closed", metadata: ["connection": "\(connection.id)", "reason": "\(reason)"])
        if case .lagged = reason { counters.lagDisconnects.add(1, ordering: .relaxed) }
        dispatcher.connectionClosed(connection.info, reason: reason)
    }
}
