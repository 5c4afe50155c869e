import Foundation
import Glibc
import SecureOpsClient
import Testing

/// Both clients when `secureopsd` goes away (SIGKILL: a crash; SIGTERM: a
/// stop nobody on the client side asked for) and comes back: the
/// `connectionLost` error, the async client's opt-in reconnect, and the
/// events a reconnecting subscription reports.
@Suite("Clients when the daemon goes away", .timeLimit(.minutes(3)))
struct ClientReconnectTests {
    /// Short delays, so attempts are many and quick while the daemon is down.
    static let quick = ReconnectPolicy(initialDelay: .milliseconds(10), maximumDelay: .milliseconds(50))

    // MARK: - Requests

    @Test func withoutReconnectEveryCallAfterADaemonCrashFailsWithConnectionLost() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let connection = try daemon.connect()
        try await client.ping()
        try connection.ping()
        try daemon.stop(signal: SIGKILL)

        let error = await #expect(throws: IpcError.self) { try await client.ping() }
        guard case .connectionLost? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
        #expect(await eventually { client.connectionState == .failed(error!) }, "\(client.connectionState)")
        // The daemon is back, but this client does not reconnect: it says
        // it must be rebuilt, every time.
        try daemon.restart()
        await #expect(throws: error!) { _ = try await client.status() }

        let blocking = #expect(throws: IpcError.self) { try connection.ping() }
        guard case .connectionLost? = blocking else {
            Issue.record("expected connectionLost from the blocking client, got \(String(describing: blocking))")
            return
        }
    }

    /// The daemon crashes; calls made while it is down wait for the
    /// reconnection (within their timeout) and are answered by the new
    /// daemon.
    @Test func withReconnectCallsMadeWhileTheDaemonIsDownAreAnsweredOnceItIsBack() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath, configuration: .init(reconnect: Self.quick))
        #expect(try await client.publish(AlertInput(severity: .low, source: "t", message: "before")) == 1)
        let firstPID = daemon.pid
        try daemon.stop(signal: SIGKILL)
        // Attempts fail while nothing listens; wait until a few have.
        #expect(await eventually { attempt(of: client) >= 3 }, "\(client.connectionState)")

        let waiting = Task { try await client.status(timeout: .seconds(30)) }
        try daemon.restart()
        let status = try await waiting.value
        #expect(status.pid == daemon.pid && status.pid != firstPID)
        #expect(client.connectionState == .connected)
        // The journal kept the stream: numbering goes on.
        #expect(try await client.publish(AlertInput(severity: .low, source: "t", message: "after")) == 2)
    }

    @Test func reconnectingGivesUpAfterMaximumAttemptsAndEveryCallSaysSo() async throws {
        let daemon = try DaemonProcess()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(100), maximumDelay: .milliseconds(200), maximumAttempts: 3)
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath, configuration: .init(reconnect: policy))
        try await client.ping()
        try daemon.stop(signal: SIGKILL)
        // Once the client has noticed (a call sent before that was in
        // flight when the connection broke: connectionLost).
        #expect(await eventually { client.connectionState != .connected })
        // Made while the client reconnects: it waits, then fails with why.
        let error = await #expect(throws: IpcError.self) { try await client.ping(timeout: .seconds(30)) }
        guard case .reconnectFailed(let attempts, let lastError)? = error else {
            Issue.record("expected reconnectFailed, got \(String(describing: error))")
            return
        }
        #expect(attempts == 3)
        #expect(lastError.description.hasPrefix("cannot connect to \(daemon.socketPath)"), "\(lastError)")
        #expect(error!.description.hasPrefix("gave up reconnecting after 3 failed attempts; the last: cannot connect to"))
        #expect(client.connectionState == .failed(error!))
        await #expect(throws: error!) { try await client.ping() }
    }

    // MARK: - Subscriptions

    @Test func withoutReconnectASubscriptionWhoseDaemonCrashesThrowsConnectionLost() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let subscription = try await client.subscribe(since: 0)
        var iterator = subscription.makeAsyncIterator()
        _ = try await client.publish(AlertInput(severity: .low, source: "t", message: "one"))
        guard case .alert(let alert)? = try await iterator.next() else {
            Issue.record("the alert did not arrive")
            return
        }
        #expect(alert.message == "one")
        try daemon.stop(signal: SIGKILL)
        let error = await #expect(throws: IpcError.self) { _ = try await iterator.next() }
        guard case .connectionLost? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
        // Ended: the iterator stays done.
        #expect(try await iterator.next() == nil)
    }

    /// A SIGTERM flushes queued alerts to subscribers, then closes: every
    /// alert arrives, and then the iteration throws, since the subscriber
    /// did not end it.
    @Test func withoutReconnectAGracefulDaemonStopDeliversEveryAlertThenThrowsConnectionLost() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let subscription = try await client.subscribe()
        for index in 1...50 { _ = try await client.publish(AlertInput(severity: .low, source: "t", message: "m\(index)")) }
        try daemon.stop(signal: SIGTERM)
        var received: [UInt64] = []
        let error = await #expect(throws: IpcError.self) {
            for try await alert in subscription.alerts { received.append(alert.sequence) }
        }
        #expect(received == Array(1...50))
        guard case .connectionLost? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
    }

    /// The events a demanding consumer sees while the daemon is down:
    /// `disconnected`, one `reconnecting` per attempt (numbered from 1),
    /// then, from a daemon without its journal (`--no-journal`, or one lost
    /// or reset), `restarted` with the new run's epoch, then its alerts.
    @Test func aReconnectingSubscriptionReportsTheLossEachAttemptAndTheRestart() async throws {
        let daemon = try DaemonProcess(extraArguments: ["--no-journal"])
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let subscription = try await client.subscribe(since: 0, reconnect: Self.quick)
        let firstEpoch = try #require(subscription.initialEpoch)
        var iterator = subscription.makeAsyncIterator()
        try daemon.stop(signal: SIGKILL)

        guard case .disconnected(let reason)? = try await iterator.next(), case .connectionLost = reason else {
            Issue.record("expected the loss to be reported first")
            return
        }
        var attempts: [Int] = []
        while attempts.count < 3, case .reconnecting(let attempt)? = try await iterator.next() { attempts.append(attempt) }
        #expect(attempts == [1, 2, 3])

        try daemon.restart()
        var last: SubscriptionEvent?
        while true {
            last = try await iterator.next()
            guard case .reconnecting(let attempt)? = last else { break }
            attempts.append(attempt)
        }
        #expect(attempts == Array(1...attempts.count), "attempts are numbered 1, 2, 3, ...: \(attempts)")
        guard case .restarted(let epoch?)? = last else {
            Issue.record("expected restarted, got \(String(describing: last))")
            return
        }
        #expect(epoch != firstEpoch)
        let publisher = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        _ = try await publisher.publish(AlertInput(severity: .high, source: "t", message: "new run"))
        guard case .alert(let alert)? = try await iterator.next() else {
            Issue.record("the new run's alert did not arrive")
            return
        }
        #expect(alert.sequence == 1 && alert.message == "new run")
        subscription.cancel()
        #expect(try await iterator.next() == nil)
    }

    /// A subscriber with reconnect while the daemon is killed (-9) in the
    /// middle of a stream of alerts and started again: it gets every alert
    /// a publisher was answered for, once each, in order, and no restart,
    /// because the journal kept the stream and subscribers only ever see
    /// what the journal has.
    @Test func aSubscriberThroughAKill9MidStreamGetsEveryAnsweredAlertOnce() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let subscription = try await client.subscribe(since: 0, reconnect: Self.quick)
        var iterator = subscription.makeAsyncIterator()
        let before = BackgroundPublisher(socket: daemon.socketPath, prefix: "before-")
        #expect(await eventually { before.sequences.count >= 2000 })
        try daemon.stop(signal: SIGKILL)
        try daemon.restart()
        let after = BackgroundPublisher(socket: daemon.socketPath, prefix: "after-")
        #expect(await eventually { after.sequences.count >= 500 })
        let answered = before.sequences + after.sequences.prefix(500)
        let last = try #require(answered.max())

        var received: [UInt64] = []
        var events: [String] = []
        while received.last ?? 0 < last, let event = try await iterator.next() {
            switch event {
            case .alert(let alert): received.append(alert.sequence)
            case .restarted: events.append("restarted")
            case .lagged(let skipped, _): events.append("lagged \(skipped)")
            default: break
            }
        }
        #expect(!events.contains("restarted") && !events.contains { $0.hasPrefix("lagged") }, "\(events)")
        #expect(received == Array(1...last), "every alert once, in order, up to the last answered")
        #expect(Set(answered).isSubset(of: Set(received)))
        subscription.cancel()
    }

    @Test func aSubscriptionGivesUpAfterMaximumAttemptsAndThrowsReconnectFailed() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let policy = ReconnectPolicy(initialDelay: .milliseconds(10), maximumAttempts: 2)
        let subscription = try await client.subscribe(reconnect: policy)
        try daemon.stop(signal: SIGKILL)
        var events: [String] = []
        let error = await #expect(throws: IpcError.self) {
            for try await event in subscription {
                switch event {
                case .disconnected: events.append("disconnected")
                case .reconnecting(let attempt): events.append("reconnecting \(attempt)")
                default: events.append("\(event)")
                }
            }
        }
        #expect(events == ["disconnected", "reconnecting 1", "reconnecting 2"])
        guard case .reconnectFailed(2, let lastError)? = error else {
            Issue.record("expected reconnectFailed after 2 attempts, got \(String(describing: error))")
            return
        }
        #expect(lastError.description.hasPrefix("cannot connect to \(daemon.socketPath)"), "\(lastError)")
    }

    /// Cancelling ends a reconnecting subscription at once, with nil: the
    /// wait before the next attempt is cut short.
    @Test func cancellingASubscriptionThatWaitsToReconnectEndsItAtOnce() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let subscription = try await client.subscribe(reconnect: ReconnectPolicy(initialDelay: .seconds(600)))
        var iterator = subscription.makeAsyncIterator()
        try daemon.stop(signal: SIGKILL)
        guard case .disconnected? = try await iterator.next(), case .reconnecting(1)? = try await iterator.next() else {
            Issue.record("expected disconnected, then reconnecting 1")
            return
        }
        // The next call waits the 600 s delay, unless cancel() (from
        // another task, during that wait or just before it) cuts it short.
        let canceller = Task { subscription.cancel() }
        let started = ContinuousClock.now
        #expect(try await iterator.next() == nil)
        #expect(ContinuousClock.now - started < .seconds(60))
        await canceller.value
    }

    private func attempt(of client: SecureOpsAsyncClient) -> Int {
        if case .reconnecting(let attempt) = client.connectionState { return attempt }
        return 0
    }
}
