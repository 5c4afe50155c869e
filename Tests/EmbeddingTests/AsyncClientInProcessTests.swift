import SecureOpsSystem
import Foundation
import SecureOpsClient
import SecureOpsEngine
import Synchronization
import Testing

/// The async client against an engine speaking the wire protocol
/// (`WireHandler`), in this process: typed calls, pipelining, timeouts,
/// cancellation, subscriptions, lag and reconnection. The same client
/// against real `secureopsd` processes, across a daemon restart, is in
/// `SecureOpsDaemonTests/AsyncClientTests.swift`.
@Suite("Async client (in-process engines)", .timeLimit(.minutes(2)))
struct AsyncClientInProcessTests {
    @Test func typedCallsRoundTrip() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        try await client.ping()
        let first = try await client.publish(.test("one", severity: .high))
        let second = try await client.publish(AlertInput(severity: .low, source: "s", message: "two", details: RawJSON(.object(["k": .string("v")]))))
        #expect((first, second) == (1, 2))
        let alerts = try await client.alerts(limit: 10)
        #expect(alerts.map(\.message) == ["one", "two"])
        #expect(alerts[0].severity == .high && alerts[1].details == RawJSON(.object(["k": .string("v")])))
        // An err reply is thrown with the server's words.
        await #expect(throws: IpcError.server("this test server refuses kill")) { _ = try await client.kill(reason: "x") }
        await #expect(throws: IpcError.server("this test server does not implement reloadPolicy")) { _ = try await client.reloadPolicy() }
        try await client.ping()
        await engine.shutdown()
    }

    @Test func requestsFromManyTasksArePipelinedAndEachGetsItsOwnReply() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let count = 300
        let assigned = try await withThrowingTaskGroup(of: (Int, UInt64).self) { group in
            for index in 0..<count {
                group.addTask { (index, try await client.publish(.test("m\(index)"))) }
            }
            var assigned: [Int: UInt64] = [:]
            for try await (index, sequence) in group { assigned[index] = sequence }
            return assigned
        }
        #expect(Set(assigned.values) == Set(1...UInt64(count)))
        // Each call got the sequence of its own alert, not a neighbour's.
        let retained = try await client.alerts(limit: count)
        let bySequence = Dictionary(uniqueKeysWithValues: retained.map { ($0.sequence, $0.message) })
        #expect(assigned.allSatisfy { bySequence[$0.value] == "m\($0.key)" })
        await engine.shutdown()
    }

    @Test func aRequestThatTimesOutThrowsAndTheConnectionStaysUsable() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        // The test server answers a deep audit after 2 s: without the
        // timeout the call would return that reply instead of throwing.
        let error = await #expect(throws: IpcError.self) {
            _ = try await client.request(.audit(AuditOptions(deep: true)), timeout: .milliseconds(50))
        }
        #expect(error?.description.hasPrefix("timed out: no reply to audit") == true, "\(String(describing: error))")
        // The late audit reply is consumed in its turn; ping gets its own.
        try await client.ping()
        #expect(try await client.publish(.test("after")) == 1)
        await engine.shutdown()
    }

    @Test func cancellingARequestThrowsCancellationErrorAtOnce() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        // Answered after 2 s: the reply would come back if cancelling did
        // not end the call.
        let slow = Task { try await client.request(.audit(AuditOptions(deep: true))) }
        // In flight: the server is working on it.
        #expect(await eventually { engine.statistics.offloadsInFlight == 1 })
        slow.cancel()
        await #expect(throws: CancellationError.self) { _ = try await slow.value }
        try await client.ping()
        await engine.shutdown()
    }

    @Test func connectErrorsSayWhatIsWrong() async throws {
        let scratch = try ScratchDirectory()
        let missing = await #expect(throws: IpcError.self) { _ = try await SecureOpsAsyncClient.connect(to: scratch.socket("absent")) }
        #expect(missing?.description.contains("cannot connect to \(scratch.socket("absent")): No such file or directory") == true)
        let long = "/tmp/" + String(repeating: "x", count: 110)
        let tooLong = await #expect(throws: IpcError.self) { _ = try await SecureOpsAsyncClient.connect(to: long) }
        #expect(tooLong?.description.contains("longer than the 107 a Unix socket address holds") == true)
    }

    @Test func withoutReconnectCallsAfterTheServerStoppedFailWithConnectionLost() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        try await client.ping()
        await engine.shutdown()
        let error = await #expect(throws: IpcError.self) { try await client.ping() }
        guard case .connectionLost? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
        // It stays lost, and says so.
        #expect(await eventually { client.connectionState == .failed(error!) })
        await #expect(throws: error!) { try await client.ping() }
    }

    // MARK: - Subscriptions

    @Test func aSubscriptionYieldsReplayThenLiveAlertsInOrder() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        for index in 1...3 { _ = try await client.publish(.test("before \(index)")) }
        let subscription = try await client.subscribe(since: 1)
        #expect(subscription.startingSequence == 4)
        #expect(subscription.initialEpoch == engine.epoch)
        for index in 1...3 { _ = try await client.publish(.test("after \(index)")) }
        var received: [String] = []
        for try await event in subscription {
            guard case .alert(let alert) = event else { continue }
            received.append("\(alert.sequence) \(alert.message)")
            if received.count == 5 { break }
        }
        #expect(received == ["2 before 2", "3 before 3", "4 after 1", "5 after 2", "6 after 3"])
        // Breaking out of the loop closed the subscription's connection.
        #expect(await eventually { engine.statistics.subscribers == 0 })
        await engine.shutdown()
    }

    @Test func cancellingTheIteratingTaskEndsTheSubscriptionAndClosesItsConnection() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let subscription = try await client.subscribe(reconnect: .default)
        let firstAlert = Locked(false)
        let consumer = Task {
            var count = 0
            for try await event in subscription {
                if case .alert = event {
                    count += 1
                    firstAlert.withLock { $0 = true }
                }
            }
            return count
        }
        _ = try await client.publish(.test("one"))
        #expect(await eventually { firstAlert.withLock { $0 } })
        #expect(engine.statistics.subscribers == 1)
        consumer.cancel()
        // The loop ends (nil, not an error) and the connection is closed,
        // even with a reconnect policy.
        #expect(try await consumer.value == 1)
        #expect(await eventually { engine.statistics.subscribers == 0 })
        await engine.shutdown()
    }

    @Test func cancelFromAnotherTaskEndsTheIteration() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let subscription = try await client.subscribe()
        let consumer = Task {
            var events = 0
            for try await _ in subscription { events += 1 }
            return events
        }
        // Cancelled while the iteration waits for the next alert (or
        // before it starts: either way it must end with nil).
        subscription.cancel()
        #expect(try await consumer.value == 0)
        #expect(await eventually { engine.statistics.subscribers == 0 })
        await engine.shutdown()
    }

    @Test func withoutReconnectAServerThatStopsEndsTheIterationWithConnectionLostAfterItsLastAlerts() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let subscription = try await client.subscribe()
        _ = try await client.publish(.test("last words"))
        await engine.shutdown()
        var messages: [String] = []
        // Queued alerts are flushed by the graceful shutdown; then the end
        // of the stream, which nobody on this side asked for: an error.
        let error = await #expect(throws: IpcError.self) {
            for try await alert in subscription.alerts { messages.append(alert.message) }
        }
        #expect(messages == ["last words"])
        guard case .connectionLost? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
    }

    @Test func closingTheClientEndsItsSubscriptionsWithNil() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket())
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let subscription = try await client.subscribe(since: 0, reconnect: .default)
        _ = try await client.publish(.test("one"))
        var iterator = subscription.makeAsyncIterator()
        guard case .alert? = try await iterator.next() else {
            Issue.record("the alert did not arrive")
            return
        }
        client.close()
        #expect(try await iterator.next() == nil)
        #expect(client.connectionState == .closed)
        await #expect(throws: IpcError.transport("the client was closed")) { try await client.ping() }
        #expect(await eventually { engine.statistics.subscribers == 0 })
        await engine.shutdown()
    }

    /// A subscriber that stops reading lags; with `onLag = disconnect` the
    /// engine tells it how many alerts it skipped and closes the connection.
    /// The client surfaces the notice, reconnects, resumes right after what
    /// it skipped, and every sequence is accounted for exactly once.
    @Test func afterALagDisconnectTheSubscriptionResumesWithoutGapOrDuplicate() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(WireHandler(), path: scratch.socket()) { configuration in
            configuration.limits.onLag = .disconnect
            configuration.limits.retainedFrames = 256
        }
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let subscription = try await client.subscribe(since: 0, reconnect: ReconnectPolicy(initialDelay: .milliseconds(10)))
        // Nobody reads yet: far more than the socket buffers and the ring hold.
        let total: UInt64 = 20_000
        let alert = AlertInput.test(String(repeating: "x", count: 200))
        for _ in 0..<total {
            try engine.publish { sequence, milliseconds, writer in
                AlertFrame.write(sequence: sequence, timestampMilliseconds: milliseconds, alert: alert, into: &writer)
            }
        }
        // The engine notices the lag when this subscriber's stalled send
        // moves again, that is once the loop below reads.
        var expected: UInt64 = 1
        var lagged = 0, disconnected = 0, reconnected = 0, delivered = 0
        var problems: [String] = []
        for try await event in subscription {
            switch event {
            case .alert(let alert):
                if alert.sequence != expected { problems.append("alert \(alert.sequence), expected \(expected)") }
                expected = alert.sequence + 1
                delivered += 1
            case .lagged(let skipped, let resumeAt):
                if resumeAt != expected + skipped { problems.append("lagged \(skipped) to \(resumeAt) at \(expected)") }
                expected = resumeAt
                lagged += 1
            case .disconnected(let reason):
                if case .connectionLost = reason {} else { problems.append("disconnected because \(reason)") }
                disconnected += 1
            case .reconnecting(let attempt):
                if attempt != 1 { problems.append("reconnecting, attempt \(attempt)") }
            case .reconnected(let after):
                if after != expected - 1 { problems.append("reconnected after \(after) at \(expected)") }
                reconnected += 1
            case .restarted:
                problems.append("restarted within one engine run")
            }
            if expected > total || problems.count > 5 { break }
        }
        #expect(problems.isEmpty, "\(problems)")
        #expect(expected == total + 1)
        #expect(lagged >= 1 && reconnected >= 1 && disconnected == reconnected)
        #expect(delivered > 0 && delivered < Int(total))
        await engine.shutdown()
    }

    /// A new engine on the same path is a new run: sequences start at 1
    /// again. The client sees it by the epoch and delivers the new run's
    /// alerts from its first, after everything the old run sent.
    @Test func aRestartedServerIsDetectedAndItsAlertsDeliveredFromTheFirst() async throws {
        let scratch = try ScratchDirectory()
        let old = try startEngine(WireHandler(), path: scratch.socket())
        let oldEpoch = old.epoch
        let client = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        let subscription = try await client.subscribe(since: 0, reconnect: ReconnectPolicy(initialDelay: .milliseconds(20)))
        for index in 1...3 { _ = try await client.publish(.test("old \(index)")) }
        await old.shutdown()

        let new = try startEngine(WireHandler(), path: scratch.socket())
        let publisher = try await SecureOpsAsyncClient.connect(to: scratch.socket())
        for index in 1...2 { _ = try await publisher.publish(.test("new \(index)")) }

        var seen: [String] = []
        for try await event in subscription {
            switch event {
            case .alert(let alert): seen.append("\(alert.sequence) \(alert.message)")
            case .restarted(let epoch): seen.append("restarted \(epoch == new.epoch && epoch != oldEpoch)")
            case .reconnected: seen.append("reconnected")
            case .lagged: seen.append("lagged")
            case .disconnected: seen.append("disconnected")
            case .reconnecting(let attempt): seen.append("reconnecting \(attempt)")
            }
            if seen.count == 8 { break }
        }
        // The new engine was serving before the loss was read: the first
        // attempt succeeds.
        #expect(seen == ["1 old 1", "2 old 2", "3 old 3", "disconnected", "reconnecting 1", "restarted true", "1 new 1", "2 new 2"])
        await new.shutdown()
    }
}
