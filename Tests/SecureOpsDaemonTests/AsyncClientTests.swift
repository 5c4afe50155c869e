import Foundation
import Glibc
import SecureOpsClient
import SecureOpsEngine
import Testing

/// The async client (`SecureOpsAsyncClient`) against real `secureopsd`
/// processes: every typed call, and a subscription that survives a daemon
/// restart. (Pipelining, timeouts, cancellation and lag reconnection against
/// in-process engines: `EmbeddingTests/AsyncClientInProcessTests.swift`.)
@Suite("Async client against secureopsd", .timeLimit(.minutes(3)))
struct AsyncClientTests {
    @Test func everyTypedCallGetsItsAnswerFromTheDaemon() async throws {
        let daemon = try DaemonProcess()
        let client = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        try await client.ping()
        let status = try await client.status()
        #expect(status.running && status.pid == daemon.pid && !status.killed)
        let sequence = try await client.publish(AlertInput(severity: .medium, source: "async-test", message: "hello"))
        #expect(sequence == 1)
        let alerts = try await client.alerts(limit: 5)
        #expect(alerts.map(\.message) == ["hello"] && alerts.first?.severity == .medium)
        let report = try await client.audit(AuditOptions())
        #expect(!report.checks.isEmpty)
        #expect(try await client.reloadPolicy() >= 0)
        let subscription = try await client.subscribe()
        #expect(subscription.startingSequence == 2)
        #expect(subscription.initialEpoch != nil, "the daemon reports its epoch on subscribe")
        subscription.cancel()
        let killSequence = try await client.kill(reason: "async client test")
        #expect(killSequence == 2)
        #expect(try await client.status().killed)
    }

    @Test func anUnknownSocketFailsWithAHint() async throws {
        let daemon = try DaemonProcess()
        try daemon.stop()
        let error = await #expect(throws: IpcError.self) { _ = try await SecureOpsAsyncClient.connect(to: daemon.socketPath) }
        #expect(error?.description.contains("is secureopsd running?") == true, "\(String(describing: error))")
    }

    /// A subscription with a reconnect policy across a graceful restart
    /// gets every alert the old daemon sent (a graceful stop flushes them,
    /// even unread). With the journal (the default) the stream goes on:
    /// `reconnected`, then the new daemon's alerts numbered after the old
    /// ones, in the same epoch. Without it (`--no-journal`) a `restarted`
    /// event, then the new daemon's alerts from 1 in a new epoch. Each
    /// alert exactly once, in order.
    @Test(arguments: [true, false])
    func aSubscriptionResumesAcrossADaemonRestartWithoutLosingAlerts(journaled: Bool) async throws {
        let daemon = try DaemonProcess(extraArguments: journaled ? [] : ["--no-journal"])
        let publisher = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        let subscription = try await publisher.subscribe(since: 0, reconnect: ReconnectPolicy(initialDelay: .milliseconds(20)))
        let firstEpoch = try #require(subscription.initialEpoch)
        var iterator = subscription.makeAsyncIterator()

        for index in 1...3 { _ = try await publisher.publish(AlertInput(severity: .low, source: "before", message: "a\(index)")) }
        var seen: [String] = []
        for _ in 1...3 { seen.append(describe(try await iterator.next())) }
        // Published, not yet read by the subscriber, when the daemon stops.
        for index in 4...6 { _ = try await publisher.publish(AlertInput(severity: .low, source: "before", message: "a\(index)")) }

        try daemon.restart()
        let fresh = try await SecureOpsAsyncClient.connect(to: daemon.socketPath)
        for index in 1...3 { _ = try await fresh.publish(AlertInput(severity: .high, source: "after", message: "b\(index)")) }

        for _ in 1...9 { seen.append(describe(try await iterator.next())) }
        // The new daemon was serving before the loss was read: the first
        // attempt succeeds.
        let before = ["1 a1", "2 a2", "3 a3", "4 a4", "5 a5", "6 a6", "disconnected", "reconnecting 1"]
        let status = try await fresh.status()
        if journaled {
            #expect(seen == before + ["reconnected after 6", "7 b1", "8 b2", "9 b3"])
            #expect(status.lastSequence == 9)
            #expect(try await epochNow(daemon.socketPath) == firstEpoch)
        } else {
            #expect(seen == before + ["restarted", "1 b1", "2 b2", "3 b3"])
            #expect(status.lastSequence == 3)
            #expect(try await epochNow(daemon.socketPath) != firstEpoch)
        }

        // Still live after the restart.
        _ = try await fresh.publish(AlertInput(severity: .info, source: "after", message: "b4"))
        #expect(describe(try await iterator.next()) == (journaled ? "10 b4" : "4 b4"))
        subscription.cancel()
        #expect(try await iterator.next() == nil)
    }

    private func describe(_ event: SubscriptionEvent?) -> String {
        switch event {
        case .alert(let alert)?: "\(alert.sequence) \(alert.message)"
        case .restarted?: "restarted"
        case .reconnected(let after)?: "reconnected after \(after)"
        case .lagged(let skipped, let resumeAt)?: "lagged \(skipped) \(resumeAt)"
        case .disconnected?: "disconnected"
        case .reconnecting(let attempt)?: "reconnecting \(attempt)"
        case nil: "end"
        }
    }

    /// The epoch a new subscription is told right now.
    private func epochNow(_ path: String) async throws -> StreamEpoch? {
        let client = try await SecureOpsAsyncClient.connect(to: path)
        let subscription = try await client.subscribe()
        defer { subscription.cancel() }
        return subscription.initialEpoch
    }
}
