import Foundation
import Glibc
import SecureOpsForwarder
import Testing
import TestSupport

/// The JetStream forwarder against real nats-server processes. Serialized:
/// the kill and restart tests need the machine's two cores to themselves
/// for their timings to mean something.
@Suite("ForwarderTests", .serialized, .timeLimit(.minutes(3)))
struct ForwarderTests {
    @Test func everyAlertArrivesWithItsSubjectBodyAndHeaders() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let server = try NATSServer(in: scratch)
        try server.start()
        let source = MemorySource()
        var configuration = ForwarderConfiguration(servers: [server.url])
        configuration.hostName = "host_one"
        let forwarder = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }

        forwarder.notify(lastSequence: source.append(300))
        #expect(await eventually(within: 20) { forwarder.status.acknowledgedSequence == 300 }, "\(forwarder.status)")
        let status = forwarder.status
        #expect(status.state == .connected)
        #expect(status.server == server.url)
        #expect(status.unforwarded == 0)

        let messages = try readStream(NATSConnectionOptions(servers: [server.url]), expected: 300)
        #expect(messages.count == 300)
        for (index, message) in messages.enumerated() {
            let sequence = UInt64(index + 1)
            let severity = MemorySource.severities[Int(sequence % 3)]
            #expect(message.subject == "secureops.alerts.host_one.\(severity)")
            #expect(message.body == MemorySource.frame(sequence, severity))
            #expect(message.headers["Nats-Msg-Id"] == "\(testEpoch)-\(sequence)")
            #expect(message.headers["Secureops-Host"] == "host_one")
        }
    }

    @Test func durableTailResumesAfterTheLastAlertItReturned() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let server = try NATSServer(in: scratch)
        try server.start()
        let source = MemorySource()
        let forwarder = try makeForwarder(ForwarderConfiguration(servers: [server.url]), source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }
        forwarder.notify(lastSequence: source.append(100))
        #expect(await eventually(within: 20) { forwarder.status.acknowledgedSequence == 100 }, "\(forwarder.status)")

        let connection = NATSConnectionOptions(servers: [server.url])
        let first = try JetStreamTail(connection: connection, subject: "secureops.alerts.>", durable: "ops")
        for expected in 1...40 {
            #expect(try first.next(timeout: .seconds(5))?.headers["Nats-Msg-Id"] == "\(testEpoch)-\(expected)")
        }
        first.close()
        let second = try JetStreamTail(connection: connection, subject: "secureops.alerts.>", durable: "ops")
        defer { second.close() }
        for expected in 41...100 {
            #expect(try second.next(timeout: .seconds(5))?.headers["Nats-Msg-Id"] == "\(testEpoch)-\(expected)")
        }
        #expect(try second.next(timeout: .milliseconds(300)) == nil)
    }

    @Test func serverKilledAndRestartedMidStreamStoresEachAlertOnce() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let server = try NATSServer(in: scratch)
        try server.start()
        let source = MemorySource()
        let forwarder = try makeForwarder(ForwarderConfiguration(servers: [server.url]), source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }

        // The publisher keeps appending while the server dies and returns.
        let feeder = Task.detached {
            for _ in 0..<20 {
                forwarder.notify(lastSequence: source.append(500))
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(await eventually(within: 30) { forwarder.status.acknowledgedSequence >= 2_000 })
        server.kill()
        #expect(await eventually(within: 10) { forwarder.status.state == .connecting }, "\(forwarder.status)")
        try server.start()
        await feeder.value
        #expect(await eventually(within: 60) { forwarder.status.acknowledgedSequence == 10_000 }, "\(forwarder.status)")

        let connection = NATSConnectionOptions(servers: [server.url])
        #expect(try JetStreamState.of(stream: "SECUREOPS_ALERTS", connection: connection).messages == 10_000)
        try checkEachOnce(readStream(connection, expected: 10_000), count: 10_000)
    }

    @Test func restartedForwarderResumesFromItsCursor() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let server = try NATSServer(in: scratch)
        try server.start()
        let source = MemorySource()
        let configuration = ForwarderConfiguration(servers: [server.url])
        let first = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        try first.start()
        first.notify(lastSequence: source.append(8_000))
        #expect(await eventually(within: 30) { first.status.acknowledgedSequence >= 1_500 })
        first.stop()
        let stopped = first.status.acknowledgedSequence
        #expect(stopped < 8_000, "stopped mid-stream")
        let cursor = try String(contentsOfFile: scratch.path + "/" + configuration.cursorFileName, encoding: .utf8)
        #expect(cursor == "\(testEpoch) \(stopped)\n")

        let second = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        #expect(second.status.acknowledgedSequence == stopped, "the new instance starts at the stored cursor")
        try second.start()
        defer { second.stop() }
        second.notify(lastSequence: 8_000)
        #expect(await eventually(within: 30) { second.status.acknowledgedSequence == 8_000 }, "\(second.status)")

        let connection = NATSConnectionOptions(servers: [server.url])
        #expect(try JetStreamState.of(stream: "SECUREOPS_ALERTS", connection: connection).messages == 8_000)
        try checkEachOnce(readStream(connection, expected: 8_000), count: 8_000)
    }

    @Test func clusterOfThreeLosesANodeMidStreamWithoutLossOrDuplicates() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let cluster = try NATSCluster(in: scratch)
        let source = MemorySource()
        var configuration = ForwarderConfiguration(servers: cluster.urls)
        configuration.replicas = 3
        let forwarder = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }

        let feeder = Task.detached {
            for _ in 0..<10 {
                forwarder.notify(lastSequence: source.append(500))
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        // Stream creation waits for the cluster's JetStream meta leader.
        #expect(await eventually(within: 60) { forwarder.status.acknowledgedSequence >= 1_000 }, "\(forwarder.status)")
        let connected = try #require(cluster.servers.first { $0.url == forwarder.status.server })
        connected.kill()
        await feeder.value
        #expect(await eventually(within: 90) { forwarder.status.acknowledgedSequence == 5_000 }, "\(forwarder.status)")

        let survivors = NATSConnectionOptions(servers: cluster.servers.filter { $0 !== connected }.map(\.url))
        #expect(try settled { try JetStreamState.of(stream: "SECUREOPS_ALERTS", connection: survivors) }.messages == 5_000)
        try checkEachOnce(readStream(survivors, expected: 5_000), count: 5_000)
    }

    @Test func tlsServerIsUsedWhenItsCAIsTrustedAndRefusedWhenNot() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let certificates = try TestCertificates(in: scratch.path)
        let server = try NATSServer(in: scratch, extra: ["--tls", "--tlscert", certificates.serverCertificate, "--tlskey", certificates.serverKey])
        try server.start()
        let source = MemorySource()

        var trusting = ForwarderConfiguration(servers: [server.url])
        trusting.connection.caFile = certificates.ca
        let forwarder = try makeForwarder(trusting, source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }
        forwarder.notify(lastSequence: source.append(50))
        #expect(await eventually(within: 20) { forwarder.status.acknowledgedSequence == 50 }, "\(forwarder.status)")
        #expect(forwarder.status.state == .connected)

        let otherDirectory = scratch.path + "/other"
        try FileManager.default.createDirectory(atPath: otherDirectory, withIntermediateDirectories: true)
        var distrusting = trusting
        distrusting.connection.caFile = certificates.otherCA
        let refused = try makeForwarder(distrusting, source: source, cursorDirectory: otherDirectory)
        try refused.start()
        defer { refused.stop() }
        refused.notify(lastSequence: 50)
        #expect(await eventually(within: 20) { refused.status.state == .failed }, "\(refused.status)")
        let error = refused.status.lastError ?? ""
        #expect(error.contains("SSL") || error.contains("certificate"), "\(error)")
        #expect(refused.status.acknowledgedSequence == 0)
    }

    @Test func wrongPasswordIsAFailedStateWithTheReason() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let server = try NATSServer(in: scratch, extra: ["--user", "secureops", "--pass", "right-password"])
        try server.start()
        let passwordFile = scratch.path + "/password"
        try writeSecret("wrong-password\n", to: passwordFile)
        var configuration = ForwarderConfiguration(servers: [server.url])
        configuration.connection.user = "secureops"
        configuration.connection.passwordFile = passwordFile
        let source = MemorySource()
        let forwarder = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }
        forwarder.notify(lastSequence: source.append(5))
        #expect(await eventually(within: 20) { forwarder.status.state == .failed }, "\(forwarder.status)")
        let error = forwarder.status.lastError ?? ""
        #expect(error.lowercased().contains("authorization") || error.lowercased().contains("auth"), "\(error)")
        #expect(forwarder.status.unforwarded == 5)

        // The same configuration with the right password connects. (The
        // failed forwarder would pick the file up too, since it reads it per
        // attempt, but only at the slowest backoff: 30 s.)
        try writeSecret("right-password\n", to: passwordFile)
        let rightDirectory = scratch.path + "/right"
        try FileManager.default.createDirectory(atPath: rightDirectory, withIntermediateDirectories: true)
        let right = try makeForwarder(configuration, source: source, cursorDirectory: rightDirectory)
        try right.start()
        defer { right.stop() }
        right.notify(lastSequence: 5)
        #expect(await eventually(within: 20) { right.status.acknowledgedSequence == 5 }, "\(right.status)")
    }

    @Test func serverThatNeverAnswersLeavesItConnectingAndNotifyNeverBlocks() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let silent = try SilentListener()
        var configuration = ForwarderConfiguration(servers: ["nats://127.0.0.1:\(silent.port)"])
        configuration.connection.connectTimeout = .milliseconds(300)
        let source = MemorySource()
        let forwarder = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path)
        try forwarder.start()
        defer { forwarder.stop() }

        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for _ in 0..<1_000 { forwarder.notify(lastSequence: source.append(1)) }
        }
        #expect(elapsed < .seconds(1), "1,000 notifies took \(elapsed)")
        #expect(await eventually(within: 10) { forwarder.status.lastError != nil }, "\(forwarder.status)")
        let status = forwarder.status
        #expect(status.state == .connecting)
        #expect(status.lastError?.lowercased().contains("timeout") == true, "\(status.lastError ?? "nil")")
        #expect(status.unforwarded == 1_000)
        #expect(status.acknowledgedSequence == 0)
    }

    @Test func retentionGapIsCountedAndReportedOnce() async throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let server = try NATSServer(in: scratch)
        try server.start()
        let configuration = ForwarderConfiguration(servers: [server.url])
        // Forwarded through 10 before; retention has since dropped 11...49.
        try "\(testEpoch) 10\n".write(toFile: scratch.path + "/" + configuration.cursorFileName, atomically: true, encoding: .utf8)
        let source = MemorySource()
        source.startAt(50)
        source.append(10)
        let gaps = GapRecorder()
        let forwarder = try makeForwarder(configuration, source: source, cursorDirectory: scratch.path, gaps: gaps)
        try forwarder.start()
        defer { forwarder.stop() }
        forwarder.notify(lastSequence: 60)
        #expect(await eventually(within: 20) { forwarder.status.acknowledgedSequence == 60 }, "\(forwarder.status)")
        forwarder.notify(lastSequence: source.append(20))
        #expect(await eventually(within: 20) { forwarder.status.acknowledgedSequence == 80 }, "\(forwarder.status)")

        #expect(gaps.all == [ForwardingGap(first: 11, last: 49)])
        #expect(forwarder.status.droppedBeforeForwarding == 39)
        #expect(try JetStreamState.of(stream: "SECUREOPS_ALERTS", connection: NATSConnectionOptions(servers: [server.url])).messages == 31)
    }
}

/// A CA, a server certificate it signed for 127.0.0.1 (SAN), and a second
/// CA that signed nothing: made with the openssl CLI.
struct TestCertificates {
    let ca: String
    let otherCA: String
    let serverCertificate: String
    let serverKey: String

    init(in directory: String) throws {
        ca = directory + "/ca.pem"
        otherCA = directory + "/other-ca.pem"
        serverCertificate = directory + "/server.pem"
        serverKey = directory + "/server-key.pem"
        let extensions = directory + "/san.ext"
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            .write(toFile: extensions, atomically: true, encoding: .utf8)
        let steps: [[String]] = [
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", directory + "/ca-key.pem", "-out", ca, "-days", "2", "-subj", "/CN=secureops test CA"],
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", directory + "/other-ca-key.pem", "-out", otherCA, "-days", "2", "-subj", "/CN=another CA"],
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", serverKey, "-out", directory + "/server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", directory + "/server.csr", "-CA", ca, "-CAkey", directory + "/ca-key.pem", "-CAcreateserial", "-out", serverCertificate, "-days", "2", "-extfile", extensions],
        ]
        for step in steps {
            let (status, output) = try run("/usr/bin/openssl", step)
            guard status == 0 else { throw TestFailure("openssl \(step.joined(separator: " ")): \(output)") }
        }
    }
}
