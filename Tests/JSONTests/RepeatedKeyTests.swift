import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// The typed decoding's rule for repeated keys, and the wire's unsigned
/// `limit`: both found trying the daemon against the contract.
@Suite(.timeLimit(.minutes(2))) struct RepeatedKeyTests {
    let decoder = FastJSONDecoder()

    // MARK: Repeated keys

    /// A type that reads fields from an object gets an error for a key the
    /// object repeats, escaped spellings included: `{"type":"ping","type":"kill"}`
    /// must not read as one request to one reader and another to the next.
    @Test(arguments: [
        (#"{"type":"ping","type":"kill"}"#, "type"),
        (#"{"type":"ping","\u0074ype":"kill"}"#, "type"),
        (#"{"type":"ping","x":1,"x":2}"#, "x"),
        (#"{"type":"publish","alert":{"severity":"low","source":"a","message":"m","source":"secureopsd"}}"#, "source"),
    ])
    func aRepeatedKeyInAnObjectATypeReadsIsAnErrorNamingIt(frame: String, key: String) {
        do {
            _ = try decoder.decode(IpcRequest.self, from: Array(frame.utf8))
            Issue.record("\(frame) decoded")
        } catch {
            #expect("\(error)".contains("duplicate key \"\(key)\": a key may appear only once in an object"), "got \(error)")
        }
    }

    @Test func aRepeatedKeyAmongManyIsFoundInLinearTime() {
        var keys = (0..<5000).map { #""k\#($0)":\#($0)"# }
        keys.append(#""k4999":0"#)
        let frame = #"{"type":"ping",\#(keys.joined(separator: ","))}"#
        #expect(throws: (any Error).self) { try decoder.decode(IpcRequest.self, from: Array(frame.utf8)) }
        #expect(throws: Never.self) { try decoder.decode(IpcRequest.self, from: Array(frame.utf8.dropLast(11) + "}".utf8)) }
    }

    /// Free-form values keep what RFC 8259 allows.
    @Test func freeFormValuesMayRepeatKeys() throws {
        let frame = #"{"type":"publish","alert":{"severity":"low","source":"a","message":"m","details":{"a":1,"a":2}}}"#
        guard case .publish(let alert) = try decoder.decode(IpcRequest.self, from: Array(frame.utf8)) else {
            Issue.record("not a publish")
            return
        }
        #expect(alert.details.map { String(decoding: $0.bytes, as: UTF8.self) } == #"{"a":1,"a":2}"#)
        #expect((try? decoder.decode(JSONValue.self, from: Array(#"{"a":1,"a":2}"#.utf8))) != nil)
    }

    @Test func aNegativeAlertsLimitIsAWrongFieldType() {
        #expect(throws: (any Error).self) { try decoder.decode(IpcRequest.self, from: Array(#"{"type":"alerts","limit":-1}"#.utf8)) }
        #expect((try? decoder.decode(IpcRequest.self, from: Array(#"{"type":"alerts","limit":5}"#.utf8))) == .alerts(limit: 5))
    }

    /// Keys alike in length and first and last byte are compared in full:
    /// no false alarm.
    @Test func keysThatOnlyLookAlikeAreNotRepeats() {
        #expect((try? decoder.decode(IpcRequest.self, from: Array(#"{"type":"ping","tyxe":1,"t\u0079pe_":2}"#.utf8))) == .ping)
    }
}
