import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Faults and hostile input through the real kernel: the daemon keeps
/// serving, loses nothing it promised and lets no one in.
@Suite("Reliability", .timeLimit(.minutes(5)))
struct ReliabilityTests {
    @Test func sigtermUnderFullLoadExitsCleanlyWithinTheGracePeriod() throws {
        let daemon = try DaemonProcess()
        let swarm = try FanoutSwarm(socket: daemon.socketPath, subscribers: 1000, expectedAlerts: 1_000_000, timeout: 60)
        try swarm.waitUntilSubscribed()
        let publishers = (0..<2).map { _ in Thread { try? publishInBulk(socket: daemon.socketPath, count: 1_000_000) } }
        publishers.forEach { $0.start() }
        let rpc = Thread {
            let tool = try? compileFixture("fanout-check")
            _ = try? run(tool ?? "", ["pings", daemon.socketPath, "2000"])
        }
        rpc.start()
        // Full load: fan-out under way, publishes and an accept storm at once.
        _ = try daemon.waitForStatus(timeout: 30) { $0.alertsPublished >= 20_000 }
        let started = Date()
        #expect(try daemon.stop(signal: SIGTERM, timeout: 15) == 0)
        #expect(Date().timeIntervalSince(started) < 10, "shutdown must finish within the grace period (5 s) plus flushing")
        let summary = try swarm.finish()
        // Every subscriber got an in-order, gap-free prefix and then the end.
        #expect(summary.closed == 1000)
        #expect(summary.duplicated == 0 && summary.reordered == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
        #expect(daemon.log.contains("secureopsd stopped"))
    }

    @Test func afterKillDashNineTheStateAndTheSignedLogSurviveARestart() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        for index in 0..<50 { _ = try connection.publish(AlertInput(severity: .info, source: "pre-crash", message: "\(index)")) }
        _ = try connection.kill(reason: "tripped before the crash")
        try daemon.stop(signal: SIGKILL)
        #expect(FileManager.default.fileExists(atPath: daemon.socketPath), "SIGKILL leaves the socket behind")
        try daemon.restart()
        let after = try daemon.connect()
        let status = try after.status()
        #expect(status.killed, "the tripped kill switch survives a crash")
        #expect(status.killReason == "tripped before the crash")
        try after.ping()
        try daemon.stop()
        let (verified, output) = try verifyLog(daemon.stateDirectory)
        #expect(verified == 0, "verify-log after kill -9 and restart: \(output)")
    }

    @Test func aSlowlorisFloodNeitherStarvesOthersNorOutlivesTheFrameDeadline() throws {
        let daemon = try DaemonProcess(extraArguments: ["--frame-timeout", "2"])
        var trickling: [RawClient] = []
        for _ in 0..<1000 {
            let client = try RawClient(path: daemon.socketPath)
            try client.write("{\"type\":")
            trickling.append(client)
        }
        // One byte a tick from every trickling connection, while a normal
        // client keeps getting answers: every ping of at least ten, over at
        // least 1.5 s, must be answered (within the client's timeout).
        let normal = try daemon.connect()
        let start = Date()
        var answered = 0
        while answered < 10 || Date().timeIntervalSince(start) < 1.5 {
            for client in trickling { try? client.write(" ") }
            try normal.ping()
            answered += 1
            usleep(100_000)
        }
        // Past the deadline, each trickling connection gets one error and is closed.
        for client in trickling.prefix(20) {
            let lines = client.readLines(1, timeout: 5)
            #expect(lines.first?.contains("frame not completed within 2") == true, "got \(lines)")
            #expect(client.isClosedByPeer())
        }
        let status = try daemon.waitForStatus(timeout: 10) { $0.connections <= 2 }
        #expect((status.frameTimeouts ?? 0) == 1000)
        try normal.ping()
    }

    /// Crafted frames: each gets an error or an answer, the connection stays
    /// usable, and the daemon lives.
    @Test(arguments: HostileFrames.all)
    func aHostileFrameGetsAClearAnswerAndTheConnectionSurvives(_ hostile: HostileFrames.Case) throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write(hostile.bytes + Array("\n{\"type\":\"ping\"}\n".utf8))
        let lines = client.readLines(2, timeout: 20)
        #expect(lines.count == 2, "\(hostile.name): got \(lines.map { $0.prefix(80) })")
        if let first = lines.first {
            #expect(first.hasPrefix(hostile.expectedPrefix), "\(hostile.name): got \(first.prefix(120))")
        }
        #expect(lines.last == #"{"type":"ok"}"#)
        try daemon.connect().ping()
    }

    @Test func clientsThatResetWithRepliesPendingLeakNothing() throws {
        let daemon = try DaemonProcess()
        for _ in 0..<50 {
            let client = try RawClient(path: daemon.socketPath)
            try client.write(String(repeating: "{\"type\":\"audit\"}\n{\"type\":\"status\"}\n", count: 20))
            // Gone before any reply: the daemon's sends meet a closed peer.
        }
        let status = try daemon.waitForStatus(timeout: 20) { $0.connections == 1 }
        #expect(status.connections == 1)
        try daemon.connect().ping()
    }
}

enum HostileFrames {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: [UInt8]
        let expectedPrefix: String
        var testDescription: String { name }
    }

    static let error = #"{"type":"err","message":""#
    static let ok = #"{"type":"ok""#

    static let all: [Case] = [
        Case(name: "deep nesting (100,000 arrays)", bytes: Array(#"{"type":"ping","x":"#.utf8) + Array(repeating: UInt8(ascii: "["), count: 100_000), expectedPrefix: error),
        Case(name: "deep nesting within the limit", bytes: Array(#"{"type":"ping","x":"#.utf8) + Array(repeating: UInt8(ascii: "["), count: 500) + Array(repeating: UInt8(ascii: "]"), count: 500) + [UInt8(ascii: "}")], expectedPrefix: ok),
        Case(name: "a huge integer where a sequence goes", bytes: Array((#"{"type":"subscribe","since":"# + String(repeating: "9", count: 5000) + "}").utf8), expectedPrefix: error),
        Case(name: "a huge number in an ignored field", bytes: Array((#"{"type":"ping","n":1"# + String(repeating: "0", count: 100_000) + "e99999}").utf8), expectedPrefix: ok),
        Case(name: "a 900 KiB string", bytes: Array((#"{"type":"ping","s":""# + String(repeating: "a", count: 900_000) + #""}"#).utf8), expectedPrefix: ok),
        Case(name: "ten thousand keys", bytes: Array(("{\"type\":\"ping\"" + (0..<10_000).map { ",\"k\($0)\":\($0)" }.joined() + "}").utf8), expectedPrefix: ok),
        Case(name: "invalid UTF-8 (lone continuation byte)", bytes: Array(#"{"type":"ping","s":""#.utf8) + [0x80] + Array(#""}"#.utf8), expectedPrefix: error),
        Case(name: "an overlong encoding of '/'", bytes: Array(#"{"type":"ping","s":""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8), expectedPrefix: error),
        Case(name: "a UTF-8 encoded surrogate half", bytes: Array(#"{"type":"ping","s":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8), expectedPrefix: error),
        Case(name: "a lone surrogate escape", bytes: Array(#"{"type":"ping","s":"\uD800"}"#.utf8), expectedPrefix: error),
        Case(name: "a raw NUL byte inside a string", bytes: Array(#"{"type":"ping","s":""#.utf8) + [0x00] + Array(#""}"#.utf8), expectedPrefix: error),
        Case(name: "a NUL byte outside any value", bytes: Array(#"{"type":"ping"}"#.utf8) + [0x00], expectedPrefix: error),
        Case(name: "an escaped NUL in a published message", bytes: Array(#"{"type":"publish","alert":{"severity":"low","source":"x","message":"a\u0000b"}}"#.utf8), expectedPrefix: ok),
        Case(name: "a code point above U+10FFFF", bytes: Array(#"{"type":"ping","s":""#.utf8) + [0xF4, 0x90, 0x80, 0x80] + Array(#""}"#.utf8), expectedPrefix: error),
        Case(name: "a type that is an object", bytes: Array(#"{"type":{"type":"ping"}}"#.utf8), expectedPrefix: error),
        Case(name: "a duplicate type key", bytes: Array(#"{"type":"ping","type":"kill"}"#.utf8), expectedPrefix: #"{"type":"err","message":"type: duplicate key"#),
        Case(name: "two values on one line", bytes: Array(#"{"type":"ping"}{"type":"kill"}"#.utf8), expectedPrefix: error),
        Case(name: "a reason full of control characters", bytes: Array(#"{"type":"publish","alert":{"severity":"low","source":"\u001b[31m","message":"\r\n{\"type\":\"alert\"}"}}"#.utf8), expectedPrefix: ok),
    ]
}
