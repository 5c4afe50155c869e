/// What runs a few times a second (`Timers`): failed accepts tried again,
/// frames that take too long to arrive, sends that take too long to
/// finish, the end of the shutdown's grace; and the budget of log lines
/// each peer's behaviour may cause.
extension EventLoop {
    func housekeeping() {
        for (key, suppressed) in peerLogs.expire(now: now) { summarizePeerLogs(key, suppressed) }
        for listener in timers.acceptRetriesDue(now) { armAccept(listener) }
        let stuckAfter = limits.stuckSendTimeout.nanoseconds
        let frameDeadline = limits.frameTimeout.nanoseconds
        var forceClose = false
        if case .draining(let deadline) = runState, now >= deadline { forceClose = true }
        for connection in connections.all where connection.state == .open || connection.state == .draining {
            if forceClose {
                abandonOffloads(of: connection)
                sendOutputNow(connection)
                connection.closeReason = .shutdown
                beginClose(connection)
            } else if connection.frameStartedAt != 0 && now - connection.frameStartedAt > frameDeadline
                        && connection.state == .open {
                // Slowloris defence: a frame must arrive whole within the
                // deadline of its first byte, however slowly bytes trickle.
                counters.frameTimeouts.add(1, ordering: .relaxed)
                connection.frameStartedAt = 0
                logAboutPeer(.frameTimeout, connection) {
                    logger.notice("closing connection: frame not completed in time", metadata: [
                        "connection": "\(connection.id)", "peer": "\(connection.peer)", "timeout": "\(limits.frameTimeout)",
                    ])
                }
                closeWithError(
                    "frame not completed within \(limits.frameTimeout); closing the connection",
                    connection, reason: .frameTimeout)
            } else if connection.send != nil && now - connection.sendStartedAt > stuckAfter {
                counters.slowDisconnects.add(1, ordering: .relaxed)
                logAboutPeer(.slowConsumer, connection) {
                    logger.warning("closing slow consumer: a send did not finish within \(limits.stuckSendTimeout)", metadata: [
                        "connection": "\(connection.id)", "peer": "\(connection.peer)",
                    ])
                }
                connection.closeReason = .stuckSend
                beginClose(connection)
            }
        }
    }

    // MARK: - Log lines peers cause

    /// What a peer's behaviour makes the engine log, each with its own
    /// budget per uid (per address for TCP peers).
    enum PeerLogKind: String, Sendable {
        case lagged = "lag notices"
        case slowConsumer = "slow-consumer disconnects"
        case frameTimeout = "frame timeouts"
    }

    struct PeerLogKey: Hashable, Sendable {
        var kind: PeerLogKind
        /// "uid 1000", "host 192.0.2.7": who the budget is for.
        var who: String
    }

    /// Runs `emit` (a log line about `connection`) unless its peer already
    /// caused 10 of that kind this minute; those are counted and summarised
    /// when the minute is over, so a peer cannot flood the log.
    func logAboutPeer(_ kind: PeerLogKind, _ connection: Connection, _ emit: () -> Void) {
        let who = switch connection.peer {
        case .local(let credentials, _): "uid \(credentials.uid)"
        case .remote(let address): "host \(address.host)"
        }
        let key = PeerLogKey(kind: kind, who: who)
        switch peerLogs.decide(key, now: now) {
        case .suppress:
            return
        case .allow(let suppressedBefore):
            if suppressedBefore > 0 { summarizePeerLogs(key, suppressedBefore) }
            emit()
        }
    }

    func summarizePeerLogs(_ key: PeerLogKey, _ count: Int) {
        logger.notice("\(count) more \(key.kind.rawValue) for \(key.who) were not logged one by one (at most \(peerLogs.limitDescription))")
    }
}
