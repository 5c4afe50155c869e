import Foundation
import SecureOpsClient
import SecureOpsSystem
import Testing

/// Both clients against a `ScriptedServer`: what a real daemon does only
/// by accident (a connection that breaks with a request in flight, odd but
/// valid framing, a reply of the wrong shape, a refusal at admission), on
/// demand. Against a real `secureopsd`: `SecureOpsDaemonTests/ClientReconnectTests.swift`.
@Suite("Clients against a scripted server", .timeLimit(.minutes(1)))
struct ClientScriptedServerTests {
    static let alertFrame = #"{"type":"alert","sequence":1,"timestamp":"2026-01-01T00:00:00.000Z","severity":"high","source":"s","message":"pushed","details":null}"#

    // MARK: - Timeouts

    /// The server reads every request and answers none: each call must end
    /// by its own `timeout:`, well before the client's default (20 s here).
    @Test func everyTypedCallOfBothClientsEndsAtItsOwnTimeout() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            while peer.readLine() != nil {}
        }
        let short = RequestTimeout.milliseconds(30)
        let client = try await SecureOpsAsyncClient.connect(to: server.path, configuration: .init(requestTimeout: .seconds(20)))
        let asyncCalls: [(String, () async throws -> Void)] = [
            ("ping", { try await client.ping(timeout: short) }),
            ("status", { _ = try await client.status(timeout: short) }),
            ("publish", { _ = try await client.publish(.test("x"), timeout: short) }),
            ("alerts", { _ = try await client.alerts(limit: 1, timeout: short) }),
            ("kill", { _ = try await client.kill(reason: nil, timeout: short) }),
            ("audit", { _ = try await client.audit(AuditOptions(), timeout: short) }),
            ("reloadPolicy", { _ = try await client.reloadPolicy(timeout: short) }),
            ("subscribe", { _ = try await client.subscribe(timeout: short) }),
            ("ping", { _ = try await client.request(.ping, timeout: short) }),
        ]
        for (verb, call) in asyncCalls {
            let error = await #expect(throws: IpcError.self, "async \(verb)") { try await call() }
            // Its own timeout, not the 20 s default: the error names which.
            #expect(error?.description.hasPrefix("timed out: no reply to \(verb) from") == true, "async \(verb): \(String(describing: error))")
            #expect(error?.description.hasSuffix("within 0.03 seconds") == true, "async \(verb): \(String(describing: error))")
        }

        let connection = try SecureOpsConnection.connect(to: server.path)
        connection.requestTimeout = .seconds(20)
        let blockingCalls: [(String, () throws -> Void)] = [
            ("ping", { try connection.ping(timeout: short) }),
            ("status", { _ = try connection.status(timeout: short) }),
            ("publish", { _ = try connection.publish(.test("x"), timeout: short) }),
            ("subscribe", { _ = try connection.subscribe(since: 0, timeout: short) }),
            ("alerts", { _ = try connection.alerts(limit: 1, timeout: short) }),
            ("kill", { _ = try connection.kill(reason: nil, timeout: short) }),
            ("audit", { _ = try connection.audit(AuditOptions(), timeout: short) }),
            ("reloadPolicy", { _ = try connection.reloadPolicy(timeout: short) }),
        ]
        for (verb, call) in blockingCalls {
            let error = #expect(throws: IpcError.self, "blocking \(verb)") { try call() }
            #expect(error?.description.hasPrefix("timed out: no reply to \(verb) from") == true, "blocking \(verb): \(String(describing: error))")
            #expect(error?.description.hasSuffix("within 0.03 seconds") == true, "blocking \(verb): \(String(describing: error))")
        }
    }

    /// Without `timeout:` a call waits the client's default; with one, that
    /// long instead. The reply to the call that timed out is matched to it
    /// and dropped, not handed to the next call.
    @Test func aCallWithoutTimeoutWaitsTheConfiguredDefaultAndALateReplyGoesToNobody() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            // Answers both publishes only once the second has arrived, so
            // the first is late for the client's 30 ms default.
            guard peer.readLine() != nil, peer.readLine() != nil else { return }
            peer.send(#"{"type":"ok","sequence":1}"# + "\n" + #"{"type":"ok","sequence":2}"# + "\n")
            peer.waitForClientToClose()
        }
        let client = try await SecureOpsAsyncClient.connect(to: server.path, configuration: .init(requestTimeout: .milliseconds(30)))
        await #expect(throws: IpcError.self) { _ = try await client.publish(.test("first")) }
        #expect(try await client.publish(.test("second"), timeout: .seconds(10)) == 2)

        let connection = try SecureOpsConnection.connect(to: server.path)
        connection.requestTimeout = .milliseconds(30)
        #expect(throws: IpcError.self) { _ = try connection.publish(.test("first")) }
        #expect(try connection.publish(.test("second"), timeout: .seconds(10)) == 2)
    }

    // MARK: - Framing and decoding

    /// The engine's framing rules, on the client side: a `\r` before the
    /// newline and empty lines are fine, for both clients.
    @Test func bothClientsAcceptCRLFAndEmptyLinesBetweenFrames() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            var sequence = 0
            while peer.readLine() != nil {
                sequence += 1
                peer.send("\n\r\n" + #"{"type":"ok","sequence":\#(sequence)}"# + "\r\n\n")
            }
        }
        let client = try await SecureOpsAsyncClient.connect(to: server.path)
        #expect(try await client.publish(.test("a")) == 1)
        #expect(try await client.publish(.test("b")) == 2)
        let connection = try SecureOpsConnection.connect(to: server.path)
        #expect(try connection.publish(.test("a")) == 1)
        #expect(try connection.publish(.test("b")) == 2)
    }

    @Test func aFrameLongerThanTheLimitEndsTheConnectionWithACodecError() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            guard peer.readLine() != nil else { return }
            peer.send(#"{"type":"ok","padding":""# + String(repeating: "x", count: 4000) + "\"}\n")
            peer.waitForClientToClose()
        }
        let limit = "a frame from the server is longer than 1024 bytes"
        // Even with a reconnect policy: a stream that breaks the protocol is
        // not a lost connection.
        let client = try await SecureOpsAsyncClient.connect(
            to: server.path, configuration: .init(maxFrameBytes: 1024, reconnect: .init(initialDelay: .milliseconds(5))))
        await #expect(throws: IpcError.codec(limit)) { try await client.ping() }
        #expect(client.connectionState == .failed(.codec(limit)))

        let connection = try SecureOpsConnection.connect(to: server.path, maxFrameBytes: 1024)
        #expect(throws: IpcError.codec(limit)) { try connection.ping() }
    }

    /// Replies decode straight into the call's type; one of the wrong shape
    /// fails that call only.
    @Test func aReplyOfTheWrongShapeFailsItsCallAndTheConnectionGoesOn() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            while let line = peer.readLine() {
                peer.send(line.contains("publish") ? #"{"type":"ok","sequence":"seven"}"# + "\n" : #"{"type":"ok"}"# + "\n")
            }
        }
        let client = try await SecureOpsAsyncClient.connect(to: server.path)
        let error = await #expect(throws: IpcError.self) { _ = try await client.publish(.test("x")) }
        #expect(error?.description.hasPrefix("protocol error: unexpected reply to publish") == true, "\(String(describing: error))")
        try await client.ping()

        let connection = try SecureOpsConnection.connect(to: server.path)
        let blockingError = #expect(throws: IpcError.self) { _ = try connection.publish(.test("x")) }
        #expect(blockingError?.description.hasPrefix("protocol error: unexpected reply to publish") == true)
        try connection.ping()
    }

    /// A blocking connection that subscribed gets alerts between replies:
    /// a typed call skips them for its reply and keeps them for `nextPush`.
    @Test func alertsThatArriveBeforeABlockingCallsReplyAreKeptForNextPush() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            guard peer.readLine() != nil else { return }
            peer.send(Self.alertFrame + "\n" + #"{"type":"ok","sequence":5}"# + "\n")
            peer.waitForClientToClose()
        }
        let connection = try SecureOpsConnection.connect(to: server.path)
        #expect(try connection.publish(.test("x")) == 5)
        guard case .alert(let alert)? = try connection.nextPush(timeout: 5) else {
            Issue.record("the pushed alert was not kept")
            return
        }
        #expect(alert.message == "pushed")
    }

    // MARK: - Lost connections

    /// The first connection closes right after reading a request. That
    /// call fails with `connectionLost`; the client reconnects; the request
    /// reached the server exactly once: nothing is re-sent.
    @Test func aRequestInFlightWhenTheConnectionBreaksFailsWithConnectionLostAndIsNotResent() async throws {
        let scratch = try ScratchDirectory()
        let received = Locked<[String]>([])
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            while let line = peer.readLine() {
                received.withLock { $0.append(line) }
                if peer.index == 0 {
                    peer.close()
                    return
                }
                peer.send(#"{"type":"ok","sequence":1}"# + "\n")
            }
        }
        let client = try await SecureOpsAsyncClient.connect(
            to: server.path, configuration: .init(reconnect: .init(initialDelay: .milliseconds(5))))
        let error = await #expect(throws: IpcError.self) { _ = try await client.publish(.test("only once")) }
        guard case .connectionLost? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
        // The next call waits for the reconnection and goes out on it.
        try await client.ping()
        #expect(client.connectionState == .connected)
        #expect(server.connectionsAccepted == 2)
        let publishes = received.withLock { $0 }.filter { $0.contains("only once") }
        #expect(publishes.count == 1, "\(received.withLock { $0 })")
    }

    /// A blocking call whose connection closes before the reply throws
    /// `connectionLost`, not a timeout or a transport error.
    @Test func aBlockingCallWhoseConnectionClosesFailsWithConnectionLost() async throws {
        let scratch = try ScratchDirectory()
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            _ = peer.readLine()
            peer.close()
        }
        let connection = try SecureOpsConnection.connect(to: server.path)
        let error = #expect(throws: IpcError.self) { try connection.ping() }
        guard case .connectionLost(let why)? = error else {
            Issue.record("expected connectionLost, got \(String(describing: error))")
            return
        }
        #expect(why == "\(server.path) closed the connection before answering ping")
    }

    /// A daemon that refuses this peer at admission says so and closes:
    /// `unauthorized`, and no reconnecting to be refused again.
    @Test func aServerThatRefusesThePeerIsNotReconnectedTo() async throws {
        let scratch = try ScratchDirectory()
        let refusal = "not authorized: uid 1000 may not use this socket (policy version 2 grants it nothing)"
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            peer.send(#"{"type":"err","message":"\#(refusal)"}"# + "\n")
            peer.close()
        }
        let client = try await SecureOpsAsyncClient.connect(
            to: server.path, configuration: .init(reconnect: .init(initialDelay: .milliseconds(5))))
        #expect(await eventually { client.connectionState == .failed(.unauthorized(refusal)) }, "\(client.connectionState)")
        await #expect(throws: IpcError.unauthorized(refusal)) { try await client.ping() }
        #expect(server.connectionsAccepted == 1)
    }

    /// A daemon at its connection limit accepts, says so and closes. Each
    /// such connection is a failed attempt (backing off, counting toward
    /// the limit), not a fresh start: the client gives up and says so.
    @Test func connectionsClosedWithAnErrorBeforeServingAreFailedAttemptsAndTheClientGivesUp() async throws {
        let scratch = try ScratchDirectory()
        let busy = "server is at its connection limit (10); try again later"
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            if peer.index == 0 {
                guard peer.readLine() != nil else { return }
                peer.send(#"{"type":"ok"}"# + "\n")
                peer.close()
                return
            }
            peer.send(#"{"type":"err","message":"\#(busy)"}"# + "\n")
            peer.close()
        }
        let client = try await SecureOpsAsyncClient.connect(
            to: server.path, configuration: .init(reconnect: .init(initialDelay: .milliseconds(5), maximumAttempts: 3)))
        try await client.ping()
        let gaveUp = IpcError.reconnectFailed(attempts: 3, lastError: .connectionLost("\(server.path) closed the connection: \(busy)"))
        #expect(await eventually { client.connectionState == .failed(gaveUp) }, "\(client.connectionState)")
        await #expect(throws: gaveUp) { try await client.ping() }
        #expect(server.connectionsAccepted == 4)
        #expect(gaveUp.description.hasPrefix("gave up reconnecting after 3 failed attempts; the last: connection lost:"))
    }

    // MARK: - Subscriptions

    /// The daemon ends a subscription with an `err` frame (a reload took
    /// `subscribe` away): the iteration throws its message at once, even
    /// with a reconnect policy, after the alerts that came before it.
    @Test func aSubscriptionTheServerEndsThrowsTheServersMessage() async throws {
        let scratch = try ScratchDirectory()
        let ended = "subscription ended: policy version 3 no longer grants uid 1000 \"subscribe\" (allowed: ping)"
        let server = try ScriptedServer(path: scratch.socket()) { peer in
            guard peer.readLine() != nil, peer.readLine() != nil else { return }
            peer.send(#"{"type":"ok","epoch":"00000000000000aa"}"# + "\n" + #"{"type":"ok","subscribed":true,"next":1}"# + "\n")
            let quoted = ended.replacingOccurrences(of: "\"", with: "\\\"")
            peer.send(Self.alertFrame + "\n" + #"{"type":"err","message":"\#(quoted)"}"# + "\n")
            peer.waitForClientToClose()
        }
        let client = try await SecureOpsAsyncClient.connect(to: server.path)
        let subscription = try await client.subscribe(reconnect: .init(initialDelay: .milliseconds(5)))
        #expect(subscription.initialEpoch == StreamEpoch(rawValue: 0xaa))
        var messages: [String] = []
        await #expect(throws: IpcError.server(ended)) {
            for try await alert in subscription.alerts { messages.append(alert.message) }
        }
        #expect(messages == ["pushed"])
        #expect(server.connectionsAccepted == 2, "the client's own connection and the subscription's; no reconnect")
    }
}
