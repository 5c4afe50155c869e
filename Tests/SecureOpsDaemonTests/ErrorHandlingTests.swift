import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Every row of WIRE.md's error table, plus the framing rules: each bad
/// input gets a clear `err` and the connection stays usable unless the
/// contract says otherwise.
@Suite("Errors and framing", .timeLimit(.minutes(2)))
struct ErrorHandlingTests {
    /// Sends `frame`, expects one err whose message contains `needle`, and
    /// that the same connection still answers a ping.
    private func expectErrorKeepsConnection(_ frame: [UInt8], contains needle: String) throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write(frame + Array("\n{\"type\":\"ping\"}\n".utf8))
        let lines = client.readLines(2)
        #expect(lines.count == 2, "got \(lines)")
        guard lines.count == 2 else { return }
        #expect(lines[0].hasPrefix(#"{"type":"err","message":""#), "got \(lines[0])")
        #expect(lines[0].contains(needle), "message \(lines[0]) lacks \(needle)")
        #expect(lines[1] == #"{"type":"ok"}"#)
    }

    @Test func malformedJSONGetsAnErrorWithTheByteOffset() throws {
        try expectErrorKeepsConnection(Array(#"{"type":"ping""#.utf8), contains: "at byte 14")
    }

    @Test func aFrameThatIsNotAnObjectIsRejected() throws {
        try expectErrorKeepsConnection(Array("[1,2,3]".utf8), contains: "object")
    }

    @Test func aMissingTypeIsNamed() throws {
        try expectErrorKeepsConnection(Array(#"{"kind":"ping"}"#.utf8), contains: "type")
    }

    @Test func anUnknownTypeListsTheKnownOnes() throws {
        try expectErrorKeepsConnection(Array(#"{"type":"reboot"}"#.utf8), contains: #"unknown request type \"reboot\""#)
    }

    @Test func aWrongFieldTypeNamesTheField() throws {
        try expectErrorKeepsConnection(Array(#"{"type":"alerts","limit":"ten"}"#.utf8), contains: "limit")
    }

    @Test func anInvalidSeverityNamesTheAcceptedValues() throws {
        try expectErrorKeepsConnection(
            Array(#"{"type":"publish","alert":{"severity":"apocalyptic","source":"a","message":"b"}}"#.utf8),
            contains: #"alert.severity: expected one of info, low, medium, high, critical, found \"apocalyptic\""#)
    }

    @Test func invalidUTF8InsideAFrameIsRejectedLikeMalformedJSON() throws {
        var frame = Array(#"{"type":"publish","alert":{"severity":"low","source":"x","message":""#.utf8)
        frame += [0xC3, 0x28] // a truncated two-byte sequence
        frame += Array(#""}}"#.utf8)
        try expectErrorKeepsConnection(frame, contains: "UTF-8")
    }

    @Test func unknownFieldsAreIgnored() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"ping\",\"extra\":{\"nested\":[1,2,{\"x\":null}]}}\n")
        #expect(client.readLines(1) == [#"{"type":"ok"}"#])
    }

    @Test func anOversizedFrameGetsOneErrorAndTheConnectionCloses() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        // 2 MiB without a newline: the daemon must not buffer it.
        let big = [UInt8](repeating: UInt8(ascii: "a"), count: 2 << 20)
        try? client.write(Array(#"{"type":"ping","pad":""#.utf8) + big)
        let lines = client.readLines(1)
        #expect(lines.count == 1)
        #expect(lines.first?.contains("exceeds the 1048576-byte limit") == true, "got \(lines)")
        #expect(client.isClosedByPeer())
        let other = try daemon.connect()
        try other.ping()
        #expect(try other.status().oversizedFrames == 1)
    }

    @Test func aFrameExactlyAtTheLimitIsAccepted() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        let prefix = #"{"type":"ping","pad":""#
        let suffix = #""}"#
        let padding = String(repeating: "b", count: (1 << 20) - prefix.utf8.count - suffix.utf8.count)
        try client.write(prefix + padding + suffix + "\r\n")
        #expect(client.readLines(1) == [#"{"type":"ok"}"#])
    }

    @Test func aFrameDeliveredOneByteAtATimeIsDecoded() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        for byte in Array("{\"type\":\"ping\"}\n{\"type\":\"ping\"}\n".utf8) {
            try client.write([byte])
            usleep(500)
        }
        #expect(client.readLines(2) == [#"{"type":"ok"}"#, #"{"type":"ok"}"#])
    }

    @Test func manyFramesInOneWriteAreAllAnswered() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write(String(repeating: "{\"type\":\"ping\"}\n", count: 2000))
        let lines = client.readLines(2000)
        #expect(lines.count == 2000)
        #expect(lines.allSatisfy { $0 == #"{"type":"ok"}"# })
    }

    @Test func crlfAndEmptyLinesAreAccepted() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("\n\r\n{\"type\":\"ping\"}\r\n\n\n{\"type\":\"ping\"}\n")
        #expect(client.readLines(2) == [#"{"type":"ok"}"#, #"{"type":"ok"}"#])
        #expect(client.readLines(1, timeout: 0.3).isEmpty, "empty lines must not be answered")
    }

    @Test func abruptDisconnectsLeakNoConnections() throws {
        let daemon = try DaemonProcess()
        for index in 0..<40 {
            let client = try RawClient(path: daemon.socketPath)
            switch index % 4 {
            case 0: try client.write("{\"type\":\"pi") // mid-frame
            case 1: try client.write("{\"type\":\"subscribe\"}\n") // mid-subscription
            case 2: try client.write("{\"type\":\"audit\",\"deep\":true}\n") // mid offloaded request
            default: break // connect and vanish
            }
        }
        let publisher = try daemon.connect()
        _ = try publisher.publish(AlertInput(severity: .info, source: "probe", message: "after disconnects"))
        publisher.close()
        // Only the polling connection itself remains.
        let status = try daemon.waitForStatus { $0.connections == 1 && $0.subscribers == 0 }
        #expect(status.connections == 1)
    }

    @Test func aHalfClosedClientStillGetsItsReplies() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"ping\"}\n{\"type\":\"audit\"}\n{\"type\":\"ping\"}\n")
        client.shutdownWrite()
        let lines = client.readLines(3)
        #expect(lines.count == 3)
        #expect(lines.first == #"{"type":"ok"}"#)
        #expect(lines.last == #"{"type":"ok"}"#)
        #expect(client.isClosedByPeer())
    }
}
