import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// WIRE.md's request examples, decoded by FastJSONDecoder and by
/// Foundation's JSONDecoder: the same values.
@Suite(.timeLimit(.minutes(2))) struct IpcRequestTests {
    static let examples: [(String, IpcRequest)] = [
        (#"{"type":"ping"}"#, .ping),
        (#"{"type":"status"}"#, .status),
        (#"{"type":"audit","deep":true,"fix":false,"json":true}"#, .audit(AuditOptions(deep: true, fix: false, json: true))),
        (#"{"type":"kill","reason":"manual trip"}"#, .kill(reason: "manual trip")),
        (#"{"type":"kill","reason":null}"#, .kill(reason: nil)),
        (#"{"type":"subscribe"}"#, .subscribe(since: nil)),
        (#"{"type":"subscribe","since":41}"#, .subscribe(since: 41)),
        (#"{"type":"alerts","limit":10}"#, .alerts(limit: 10)),
        (#"{"type":"reloadPolicy"}"#, .reloadPolicy),
        (#"{"type":"publish","alert":{"severity":"high","source":"fs-watch","message":"ssh key read","details":{"path":"/home/a/.ssh/id_ed25519"}}}"#,
         .publish(AlertInput(severity: .high, source: "fs-watch", message: "ssh key read",
                             details: try! RawJSON(validating: Array(#"{"path":"/home/a/.ssh/id_ed25519"}"#.utf8))))),
    ]

    @Test func decodesEveryWireExampleLikeFoundation() throws {
        let fast = FastJSONDecoder()
        for (frame, expected) in Self.examples {
            let ours = try fast.decode(IpcRequest.self, from: frame)
            let theirs = try JSONDecoder().decode(IpcRequest.self, from: Data(frame.utf8))
            #expect(ours == expected, "\(frame)")
            #expect(theirs == expected, "\(frame)")
        }
    }

    @Test func defaultsMissingOptionalFields() throws {
        let fast = FastJSONDecoder()
        #expect(try fast.decode(IpcRequest.self, from: #"{"type":"audit"}"#) == .audit(AuditOptions()))
        #expect(try fast.decode(IpcRequest.self, from: #"{"type":"kill"}"#) == .kill(reason: nil))
        #expect(try fast.decode(IpcRequest.self, from: #"{"type":"alerts","limit":null}"#) == .alerts(limit: nil))
    }

    @Test func ignoresUnknownFieldsAndFindsTypeAnywhere() throws {
        let frame = #"{"extra":{"deep":[1,2,3]},"limit":5,"x":"y","type":"alerts"}"#
        #expect(try FastJSONDecoder().decode(IpcRequest.self, from: frame) == .alerts(limit: 5))
        #expect(try JSONDecoder().decode(IpcRequest.self, from: Data(frame.utf8)) == .alerts(limit: 5))
    }

    @Test func keepsDetailsAsTheValidatedTextAsWritten() throws {
        let frame = #"{"type":"publish","alert":{"severity":"low","source":"s","message":"m","details": { "b" : [1, 2.50] ,"a":"\u00e9"} }}"#
        guard case .publish(let input) = try FastJSONDecoder().decode(IpcRequest.self, from: frame) else {
            Issue.record("not a publish")
            return
        }
        #expect(input.details?.text == #"{ "b" : [1, 2.50] ,"a":"\u00e9"}"#)
        // Foundation's decoder goes through JSONValue: same value, re-encoded.
        guard case .publish(let viaFoundation) = try JSONDecoder().decode(IpcRequest.self, from: Data(frame.utf8)) else {
            Issue.record("not a publish")
            return
        }
        #expect(viaFoundation.details?.value["a"] == .string("é"))
        #expect(viaFoundation.details?.value["b"]?[1]?.jsonNumberDouble == 2.5)
    }

    @Test func treatsNullDetailsAsAbsent() throws {
        let frame = #"{"type":"publish","alert":{"severity":"info","source":"s","message":"m","details":null}}"#
        #expect(try FastJSONDecoder().decode(IpcRequest.self, from: frame)
            == .publish(AlertInput(severity: .info, source: "s", message: "m", details: nil)))
        #expect(try JSONDecoder().decode(IpcRequest.self, from: Data(frame.utf8))
            == .publish(AlertInput(severity: .info, source: "s", message: "m", details: nil)))
    }

    @Test func decodesManyFramesWithOneDecoder() throws {
        // Allocation counts per frame are measured and enforced by the
        // Benchmarks package (thresholds); here: one decoder, many frames.
        let fast = FastJSONDecoder()
        for _ in 0..<1000 {
            #expect(try fast.decode(IpcRequest.self, from: #"{"type":"status"}"#) == .status)
        }
    }
}

extension JSONValue {
    var jsonNumberDouble: Double? {
        if case .number(let n) = self { return n.doubleValue }
        return nil
    }
}

@Suite("Known frames", .timeLimit(.minutes(2)))
struct KnownFrameTests {
    @Test func theExactPingAndStatusFramesSkipTheParserAndDecodeTheSame() throws {
        for (text, expected) in [(#"{"type":"ping"}"#, IpcRequest.ping), (#"{"type":"status"}"#, .status)] {
            let known = Array(text.utf8).withUnsafeBytes { IpcRequest.decodeKnownFrame($0) }
            #expect(known == expected)
            #expect(try FastJSONDecoder().decode(IpcRequest.self, from: Array(text.utf8)) == expected)
        }
    }

    @Test func anyOtherSpellingIsParsedAndValidatedAsUsual() throws {
        for text in [#"{ "type":"ping"}"#, #"{"type":"ping","x":1}"#, #"{"type":"pong"}"#, #"{"type":"ping"} "#, #"{"type":"Ping"}"#] {
            #expect(Array(text.utf8).withUnsafeBytes { IpcRequest.decodeKnownFrame($0) } == nil, "\(text)")
        }
        #expect(try FastJSONDecoder().decode(IpcRequest.self, from: Array(#"{ "type" : "ping" }"#.utf8)) == .ping)
        #expect(throws: JSONDecodingError.self) { try FastJSONDecoder().decode(IpcRequest.self, from: Array(#"{"type":"pong"}"#.utf8)) }
    }
}
