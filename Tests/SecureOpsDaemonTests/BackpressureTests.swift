import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// A client that sends faster than it reads is throttled through the
/// kernel's socket buffers, not buffered without bound by the daemon.
@Suite("Back-pressure", .timeLimit(.minutes(2)))
struct BackpressureTests {
    @Test func aClientThatNeverReadsItsRepliesIsThrottledAndLosesNothing() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        let flags = fcntl(client.fd, F_GETFL)
        _ = fcntl(client.fd, F_SETFL, flags | O_NONBLOCK)
        // `status` replies are ~600 bytes for a 18-byte request: replies
        // outgrow requests 30 to 1.
        let request = Array("{\"type\":\"status\"}\n".utf8)
        var sent = 0
        var blockedSince: Date?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let n = request.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n == request.count {
                sent += 1
                blockedSince = nil
            } else {
                #expect(n < 0 && errno == EAGAIN, "a partial or failed write: \(n)")
                if n > 0 { break }
                if blockedSince == nil { blockedSince = Date() }
                if Date().timeIntervalSince(blockedSince!) > 1 { break }
                usleep(1000)
            }
        }
        #expect(blockedSince != nil, "the daemon must stop reading a client that does not read its replies")
        // Others are still served while this client is throttled, and the
        // daemon holds at most its output cap (4 MiB) for it.
        try daemon.connect().ping()
        if !underSanitizer { #expect(residentBytes(pid: daemon.pid) < 96 << 20) }
        // Now read everything: one reply per request sent, none lost.
        _ = fcntl(client.fd, F_SETFL, flags)
        let replies = client.readLines(sent, timeout: 30)
        #expect(replies.count == sent)
        #expect(replies.allSatisfy { $0.hasPrefix(#"{"type":"ok","running":true"#) })
    }

    /// The review's amplification: 100 `alerts` requests with a huge limit
    /// in one small write, and the client stops reading. Each reply is
    /// capped (1,000 alerts, 2 MiB), and once the replies reach the output
    /// limit the frames still in the read are held, unhandled, until the
    /// client reads: the daemon never holds more than the limit for it.
    /// When it reads, every request is answered.
    @Test func aBurstOfExpensiveRequestsInOneWriteIsHandledOnlyAsItsRepliesDrain() throws {
        let daemon = try DaemonProcess(
            policy: #"{"version": 2, "grants": [{"uid": 65534, "allow": ["alerts"]}]}"#,
            socketMode: "0666", reachableByOtherUsers: true)
        let publisher = try daemon.connect()
        try retain(2000, alertsOf: 1000, through: publisher)
        let before = try publisher.status().framesReceived ?? 0

        let burst = Process()
        burst.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        burst.arguments = SecondUser.setpriv() + [try compileFixture("burst-client"), daemon.socketPath, "100", #"{"type":"alerts","limit":999999999}"#]
        let input = Pipe()
        let output = Pipe()
        burst.standardInput = input
        burst.standardOutput = output
        try burst.run()
        defer { killAndWait(burst) }
        #expect(String(decoding: output.fileHandleForReading.availableData, as: UTF8.self) == "SENT\n")

        let paused = try daemon.waitForStatus { ($0.readingPaused ?? 0) == 1 }
        // Frames handled since the burst: a few replies' worth (each about
        // 1 MB, against a 4 MiB output limit), plus the status polls.
        let handled = (paused.framesReceived ?? 0) - before
        #expect(handled < 20, "\(handled) frames were handled while the client read nothing")
        // Nothing more is handled while it does not read.
        let later = try publisher.status()
        #expect((later.framesReceived ?? 0) - (paused.framesReceived ?? 0) <= 30, "reading did not stay paused")
        #expect(later.readingPaused == 1)

        try input.fileHandleForWriting.close()
        burst.waitUntilExit()
        let summary = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let fields = summary.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        #expect(fields.count == 8, "got \(summary)")
        guard fields.count == 8 else { return }
        #expect(fields[1] == "100", "every request answered: \(summary)")
        #expect(Int(fields[3]) ?? .max <= WireDefaults.alertsReplyMaxBytes + 64, "\(summary)")
        #expect(fields[5] == "1000", "\(summary)")
        #expect(fields[7] == "0", "\(summary)")
        #expect(try publisher.status().readingPaused == 0)
    }

    /// A reader that takes a little now and then used to keep a big send
    /// alive forever, each partial send moving the deadline: now the whole
    /// send must finish within the deadline.
    @Test func aReaderThatTakesALittleNowAndThenIsCutOffWhenItsSendMissesTheDeadline() throws {
        let daemon = try DaemonProcess(
            extraArguments: ["--stuck-send-timeout", "2"],
            policy: #"{"version": 2, "grants": [{"uid": 65534, "allow": ["alerts"]}]}"#,
            socketMode: "0666", reachableByOtherUsers: true)
        let publisher = try daemon.connect()
        try retain(1000, alertsOf: 2000, through: publisher)
        // About 160 KB every half second: enough for the kernel to take a
        // little of the ~2 MB reply each time, far too little to finish it.
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        reader.arguments = SecondUser.setpriv() + [try compileFixture("slow-reader"), daemon.socketPath, #"{"type":"alerts","limit":1000}"#, "163840", "500"]
        let output = Pipe()
        reader.standardOutput = output
        try reader.run()
        defer { killAndWait(reader) }
        let status = try daemon.waitForStatus(timeout: 20) { ($0.slowDisconnects ?? 0) == 1 }
        #expect(status.slowDisconnects == 1)
        reader.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let read = Int(text.split(separator: "\n").last?.split(separator: " ").last ?? "") ?? -1
        #expect(read >= 0 && read < 2_000_000, "the reader got the whole reply (\(read) bytes) before the cut: \(text)")
        try waitUntil("the cut in the daemon's log") { daemon.log.contains("closing slow consumer: a send did not finish within 2.0 seconds") }
    }

    /// Publishes `count` alerts whose details pad them to about `bytes`
    /// bytes each (pipelined), and waits for every answer.
    func retain(_ count: Int, alertsOf bytes: Int, through publisher: SecureOpsConnection) throws {
        let details = try RawJSON(validating: Array(#"{"pad":"\#(String(repeating: "x", count: bytes))"}"#.utf8))
        for index in 0..<count {
            try publisher.send(.publish(AlertInput(severity: .info, source: "fill", message: "\(index)", details: details)))
        }
        for _ in 0..<count { _ = try publisher.reply() }
    }
}
