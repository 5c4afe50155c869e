import Foundation
import Glibc
import SecureOpsClient
import SecureOpsForwarder
import Testing
import TestSupport

/// `secureopsd --forward-nats` against a real nats-server: what reaches
/// the stream, through a daemon crash, a NATS that is down, wrong
/// credentials; and local service meanwhile.
@Suite("Forwarding to NATS JetStream", .serialized, .timeLimit(.minutes(5)))
struct ForwardingDaemonTests {
    /// Reads the stream from its start until `count` messages came (and a
    /// moment more, to catch extras).
    private func readStream(_ url: String, count: Int) throws -> [TailedMessage] {
        var tail: JetStreamTail?
        // The daemon creates the stream once it connects.
        #expect(eventually(within: 20) { tail = try? JetStreamTail(connection: NATSConnectionOptions(servers: [url])); return tail != nil })
        guard let tail else { throw TestFailure("no stream to read") }
        defer { tail.close() }
        var messages: [TailedMessage] = []
        while messages.count < count, let message = try tail.next(timeout: .seconds(10)) { messages.append(message) }
        if let extra = try tail.next(timeout: .milliseconds(300)) { messages.append(extra) }
        return messages
    }

    /// Sequences by `Nats-Msg-Id` (`<epoch>-<sequence>`), in stream order.
    private func sequences(_ messages: [TailedMessage], epoch: String) throws -> [UInt64] {
        try messages.map { message in
            guard let id = message.headers["Nats-Msg-Id"], id.hasPrefix(epoch + "-"), let sequence = UInt64(id.dropFirst(17)) else {
                throw TestFailure("unexpected message id \(message.headers["Nats-Msg-Id"] ?? "none")")
            }
            return sequence
        }
    }

    @Test func everyAlertReachesTheStreamWithItsSubjectBodyAndHeaders() throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let nats = try NATSServer(in: scratch)
        try nats.start()
        let daemon = try DaemonProcess(extraArguments: ["--forward-nats", nats.url, "--forward-host-name", "host-1"])
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let publisher = try daemon.connect()
        let severities: [Severity] = [.info, .low, .medium, .high, .critical]
        for index in 0..<50 {
            _ = try publisher.publish(AlertInput(severity: severities[index % 5], source: "fwd-test", message: "alert \(index)", details: RawJSON(.object(["n": .number(JSONNumber(index))]))))
        }
        var frames: [[UInt8]] = []
        while frames.count < 50, let frame = try subscriber.readFrame(timeout: 10) { frames.append(frame) }
        let epoch = try #require(try publisher.status().epoch)

        let messages = try readStream(nats.url, count: 50)
        #expect(messages.count == 50)
        #expect(try sequences(messages, epoch: epoch) == Array(1...50))
        for (index, message) in messages.enumerated() {
            #expect(message.subject == "secureops.alerts.host-1.\(severities[index % 5].rawValue)")
            // `readFrame` gives a frame without its newline, as the body is.
            #expect(String(decoding: message.body, as: UTF8.self) == String(decoding: frames[index], as: UTF8.self), "the body is the frame subscribers get")
            #expect(message.headers["Secureops-Host"] == "host-1")
        }
        let status = try daemon.waitForStatus { $0.forwarder?.acknowledgedSequence == 50 }
        #expect(status.forwarder?.state == "connected" && status.forwarder?.unforwarded == 0)
        #expect(status.forwarder?.server == nats.url)
    }

    /// The daemon killed (-9) mid-stream and started again: every alert a
    /// publisher was answered for is in the stream exactly once.
    @Test func theDaemonKilledMidStreamAndRestartedPutsEveryAnsweredAlertInTheStreamOnce() throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let nats = try NATSServer(in: scratch)
        try nats.start()
        let daemon = try DaemonProcess(extraArguments: ["--forward-nats", nats.url])
        let epoch = try #require(try daemon.connect().status().epoch)
        let publisher = BackgroundPublisher(socket: daemon.socketPath, prefix: "a")
        #expect(eventually { publisher.sequences.count >= 3000 })
        try daemon.stop(signal: SIGKILL)
        let answered = publisher.sequences
        try daemon.restart()
        let last = try daemon.connect().status().lastSequence
        let status = try daemon.waitForStatus(timeout: 30) { $0.forwarder?.acknowledgedSequence == last }
        #expect(status.forwarder?.unforwarded == 0)

        let forwarded = try sequences(try readStream(nats.url, count: Int(last)), epoch: epoch)
        #expect(forwarded == Array(1...last), "each alert once, in order")
        #expect(Set(answered).isSubset(of: Set(forwarded)))
    }

    /// NATS is down: alerts still reach local subscribers at once, the
    /// forwarder says it is connecting and why; when NATS comes up, the
    /// backlog goes out from the journal.
    @Test func withNATSDownLocalServiceGoesOnAndTheBacklogFollowsWhenItComesUp() throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let nats = try NATSServer(in: scratch)
        let daemon = try DaemonProcess(extraArguments: ["--forward-nats", nats.url])
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let publisher = try daemon.connect()
        for index in 1...20 { _ = try publisher.publish(AlertInput(severity: .high, source: "t", message: "m\(index)")) }
        var received = 0
        while received < 20, case .alert? = try subscriber.nextPush(timeout: 10) { received += 1 }
        #expect(received == 20)
        let down = try daemon.waitForStatus { $0.forwarder?.lastError != nil }
        #expect(down.forwarder?.state == "connecting" && down.forwarder?.acknowledgedSequence == 0 && down.forwarder?.unforwarded == 20, "\(String(describing: down.forwarder))")

        try nats.start()
        let up = try daemon.waitForStatus(timeout: 60) { $0.forwarder?.acknowledgedSequence == 20 }
        #expect(up.forwarder?.state == "connected")
        #expect(try readStream(nats.url, count: 20).count == 20)
    }

    @Test func wrongCredentialsAreAFailedStateWithTheReasonAndLocalServiceGoesOn() throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let nats = try NATSServer(in: scratch, extra: ["--user", "secureops", "--pass", "right"])
        try nats.start()
        let passwordFile = scratch.path + "/password"
        try writeSecret("wrong\n", to: passwordFile)
        let daemon = try DaemonProcess(extraArguments: [
            "--forward-nats", nats.url, "--forward-user", "secureops", "--forward-password-file", passwordFile,
        ])
        #expect(try daemon.connect().publish(AlertInput(severity: .low, source: "t", message: "local")) == 1)
        let status = try daemon.waitForStatus(timeout: 20) { $0.forwarder?.state == "failed" }
        #expect(status.forwarder?.lastError?.contains("Authorization") == true, "\(String(describing: status.forwarder?.lastError))")
        #expect(daemon.log.contains("Authorization Violation"))
    }

    /// `secureops tail --nats` prints the fleet's alerts as the stream has
    /// them; with `--durable` a second tail resumes after the last printed.
    @Test func tailPrintsTheStreamAndADurableTailResumesWhereItStopped() throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let nats = try NATSServer(in: scratch)
        try nats.start()
        let daemon = try DaemonProcess(extraArguments: ["--forward-nats", nats.url])
        let publisher = try daemon.connect()
        for index in 1...3 { _ = try publisher.publish(AlertInput(severity: .high, source: "t", message: "first \(index)")) }
        _ = try daemon.waitForStatus { $0.forwarder?.acknowledgedSequence == 3 }

        let first = try TailProcess(nats.url, durable: "ops", json: true)
        let lines = try first.lines(3)
        #expect(lines.map { $0.contains("\"message\":\"first 1\"") } == [true, false, false])
        #expect(lines.allSatisfy { $0.hasPrefix("{\"type\":\"alert\",\"sequence\":") })
        #expect(try first.stop() == 0)

        // Without --json, a line per alert as `secureops subscribe` prints
        // it, after the host.
        let readable = try TailProcess(nats.url, durable: nil, json: false)
        let host = try #require(try readable.lines(1).first)
        #expect(host.contains("  HIGH      #1  t: first 1"), "\(host)")
        #expect(try readable.stop() == 0)

        for index in 1...2 { _ = try publisher.publish(AlertInput(severity: .high, source: "t", message: "second \(index)")) }
        _ = try daemon.waitForStatus { $0.forwarder?.acknowledgedSequence == 5 }
        let resumed = try TailProcess(nats.url, durable: "ops", json: true)
        let next = try resumed.lines(2)
        #expect(next.map { $0.contains("\"message\":\"second 1\"") } == [true, false])
        #expect(next[1].contains("\"message\":\"second 2\""))
        #expect(try resumed.stop() == 0)
    }

    /// Retention drops journal segments while NATS is down: when it comes
    /// back, what is gone is counted, said in one critical alert and
    /// recorded; the rest is forwarded.
    @Test func retentionThatDropsUnforwardedAlertsIsLoud() throws {
        let scratch = try ScratchDirectory(prefix: "so-fwd")
        let nats = try NATSServer(in: scratch)
        let daemon = try DaemonProcess(extraArguments: [
            "--forward-nats", nats.url, "--journal-max-bytes", "1M", "--journal-segment-bytes", "65536",
        ])
        try publishInBulk(socket: daemon.socketPath, count: 8000)
        // Retention runs beside the writes (on io_uring, on the journal's
        // maintenance queue): wait until it has brought the journal within
        // its limit, so that what it dropped is settled before NATS is up.
        _ = try daemon.waitForStatus { status in
            guard let journal = status.journal else { return false }
            return journal.firstSequence > 1 && journal.bytes <= 1 << 20
        }

        try nats.start()
        let status = try daemon.waitForStatus(timeout: 60) { $0.forwarder.map { $0.acknowledgedSequence >= 8000 && $0.droppedBeforeForwarding > 0 } ?? false }
        // What retention had dropped when the forwarder read the journal.
        let firstKept = try #require(status.journal?.firstSequence)
        #expect(status.forwarder?.droppedBeforeForwarding == firstKept - 1)
        let alerts = try daemon.connect().alerts(limit: 5)
        let loud = alerts.filter { $0.severity == .critical && $0.source == "secureopsd" }
        #expect(loud.count == 1 && loud.first?.message.hasPrefix("\(firstKept - 1) alerts (sequences 1...\(firstKept - 1)) left the journal before they were forwarded") == true, "\(alerts.map(\.message))")
        #expect(daemon.log.contains("alerts left the journal before they were forwarded"))
    }

    /// A host name that does not resolve: the forwarder keeps trying and
    /// says why; the daemon serves as ever.
    @Test func anUnknownHostLeavesTheForwarderConnectingWithTheReason() throws {
        let daemon = try DaemonProcess(extraArguments: ["--forward-nats", "nats://no-such-host.invalid:4222"])
        #expect(try daemon.connect().publish(AlertInput(severity: .low, source: "t", message: "local")) == 1)
        let status = try daemon.waitForStatus(timeout: 20) { $0.forwarder?.lastError != nil }
        #expect(status.forwarder?.state == "connecting", "\(String(describing: status.forwarder))")
        #expect(status.forwarder?.lastError?.contains("no-such-host.invalid") == true, "\(String(describing: status.forwarder?.lastError))")
        #expect(daemon.log.contains("no-such-host.invalid"))
    }

    @Test func forwardingNeedsTheJournal() throws {
        let (status, output) = try run(DaemonProcess.binaryDirectory + "/secureopsd", ["--forward-nats", "nats://127.0.0.1:1", "--no-journal"])
        #expect(status != 0)
        #expect(output.contains("--forward-nats forwards from the journal: drop --no-journal"), "\(output)")
    }
}

/// `secureops tail` in its own process, its output read line by line.
private final class TailProcess {
    let process = Process()
    private let output = Pipe()
    private var buffered = ""

    init(_ url: String, durable: String?, json: Bool = true) throws {
        process.executableURL = URL(fileURLWithPath: DaemonProcess.cliPath)
        process.arguments = ["tail", "--nats", url] + (durable.map { ["--durable", $0] } ?? []) + (json ? ["--json"] : [])
        process.standardOutput = output
        try process.run()
    }

    deinit { killAndWait(process) }

    /// The next `count` lines, within 20 seconds.
    func lines(_ count: Int) throws -> [String] {
        var lines: [String] = []
        let reader = output.fileHandleForReading
        let deadline = Date().addingTimeInterval(20)
        while lines.count < count {
            if let newline = buffered.firstIndex(of: "\n") {
                lines.append(String(buffered[..<newline]))
                buffered.removeSubrange(...newline)
                continue
            }
            guard Date() < deadline, process.isRunning else { throw TestFailure("tail printed \(lines.count) of \(count) lines") }
            let data = reader.availableData
            if data.isEmpty { throw TestFailure("tail closed its output after \(lines.count) lines") }
            buffered += String(decoding: data, as: UTF8.self)
        }
        return lines
    }

    func stop() throws -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        return try waitForExit(process, what: "secureops tail")
    }
}
