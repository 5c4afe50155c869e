import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// Exact messages, offsets and paths for broken frames, as the daemon puts
/// them in `err` frames.
@Suite(.timeLimit(.minutes(2))) struct ErrorMessageTests {
    func error(_ frame: String) -> JSONDecodingError? { decodeError(IpcRequest.self, frame) }

    @Test func namesTheByteWhereAnObjectMemberIsNotFollowedByCommaOrBrace() {
        let e = error(#"{"type":"ping" "x":1}"#)
        #expect(e?.offset == 15)
        #expect(e?.codingPath == "")
        #expect(e?.description == #"at byte 15: expected ',' or '}' after an object member, found '"'"#)
    }

    @Test func reportsAnUnknownSeverityWithItsPath() {
        let e = error(#"{"type":"publish","alert":{"severity":"apocalyptic","source":"x","message":"y"}}"#)
        #expect(e?.offset == nil)
        #expect(e?.codingPath == "alert.severity")
        #expect(e?.description == #"alert.severity: expected one of info, low, medium, high, critical, found "apocalyptic""#)
    }

    @Test func reportsMissingFieldsWithTheirParentPath() {
        #expect(error(#"{}"#)?.description == #"missing field "type""#)
        #expect(error(#"{"type":"publish","alert":{"severity":"low","message":"m"}}"#)?.description
            == #"alert: missing field "source""#)
        #expect(error(#"{"type":"publish"}"#)?.description == #"missing field "alert""#)
    }

    @Test func reportsTypeMismatchesWithPathAndKinds() {
        #expect(error(#"{"type":"publish","alert":{"severity":"low","source":1,"message":"m"}}"#)?.description
            == "alert.source: expected a string, found a number")
        #expect(error(#"{"type":"audit","deep":"yes"}"#)?.description == "deep: expected a boolean, found a string")
        #expect(error(#"{"type":"kill","reason":[]}"#)?.description == "reason: expected a string, found an array")
        #expect(error(#"{"type":"alerts","limit":"10"}"#)?.description == "limit: expected an integer, found a string")
        #expect(error(#"{"type":null}"#)?.description == "type: expected a string, found null")
        #expect(error(#"{"type":"publish","alert":{"severity":"low","source":"s","message":"m","details":[1]}}"#)?.description
            == "alert.details: expected a JSON object or null")
    }

    @Test func reportsOutOfRangeIntegersWithTheirText() {
        #expect(error(#"{"type":"subscribe","since":-1}"#)?.description
            == "since: expected an integer between 0 and 18446744073709551615, found -1")
        #expect(error(#"{"type":"alerts","limit":1.5}"#)?.description
            == "limit: expected an integer between 0 and 18446744073709551615, found 1.5")
    }

    @Test func reportsATopLevelThatIsNotAnObject() {
        #expect(error(#"[{"type":"ping"}]"#)?.description == "expected a JSON object, found an array")
        #expect(error(#""ping""#)?.description == "expected a JSON object, found a string")
        #expect(error(#"{"type":"publish","alert":"x"}"#)?.description == "alert: expected a JSON object, found a string")
    }

    @Test func reportsAnUnknownRequestType() {
        #expect(error(#"{"type":"bogus"}"#)?.description
            == #"type: unknown request type "bogus"; expected one of ping, status, audit, kill, subscribe, alerts, reloadPolicy, publish"#)
    }

    @Test func namesTheOffsetAndContainerOfSyntaxErrorsInNestedValues() {
        let e = error(#"{"type":"publish","alert":{"details":{"a":tru}}}"#)
        #expect(e?.offset == 42)
        #expect(e?.codingPath == "alert.details")
        #expect(e?.description == "at byte 42 in alert.details: invalid literal, expected 'true'")
        let inArray = error(#"{"type":"x","list":[1,2,[3,-]]}"#)
        #expect(inArray?.description == "at byte 28 in list[2]: invalid number: expected a digit after '-'")
    }

    @Test func reportsTruncatedFrames() {
        #expect(error(#"{"type":"ping""#)?.description
            == "at byte 14: unexpected end of input, expected ',' or '}' after an object member")
        #expect(error(#"{"type":"pi"#)?.description == #"at byte 11: unexpected end of input inside a string (missing closing '"')"#)
        #expect(error("")?.description == "at byte 0: unexpected end of input, expected a JSON value")
        #expect(error(#"{"type":"#)?.description == "at byte 8: unexpected end of input, expected a JSON value")
    }

    @Test func reportsInvalidUTF8AndEscapesAtTheirByte() {
        let badUTF8: [UInt8] = Array(#"{"type":"p"#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        let e1 = #expect(throws: JSONDecodingError.self) { try FastJSONDecoder().decode(IpcRequest.self, from: badUTF8) }
        #expect(e1?.description == "at byte 11: invalid UTF-8: byte 0x28 after lead byte 0xC3 (overlong, surrogate, out of range or truncated)")
        #expect(error(#"{"type":"\ud800"}"#)?.description == #"at byte 9: invalid \u escape: high surrogate \uD800 is not followed by a low surrogate"#)
        #expect(error(#"{"type":"\udc00"}"#)?.description == #"at byte 9: invalid \u escape: lone low surrogate \uDC00"#)
        #expect(error("{\"type\":\"a\nb\"}")?.description == "at byte 10: control character U+000A must be escaped in a string")
    }

    @Test func reportsStructuralErrors() {
        #expect(error(#"{"type":"ping",}"#)?.description == "at byte 15: expected a string key after ',', found '}'")
        #expect(error(#"{type:"ping"}"#)?.description == "at byte 1: expected a string key or '}' after '{', found 't'")
        #expect(error(#"{"type" "ping"}"#)?.description == #"at byte 8: expected ':' after an object key, found '"'"#)
        #expect(error(#"{"type":"ping"} {}"#)?.description == "at byte 16: unexpected '{' after the JSON value")
        #expect(error(#"{"type":01}"#)?.description == "at byte 9: invalid number: leading zeros are not allowed")
        #expect(error("{\"a\":[1 2]}")?.description == "at byte 8 in a: expected ',' or ']' after an array element, found '2'")
    }

    @Test func quotesHostileValuesSafelyInMessages() {
        let e = error(#"{"type":"bad\nvalue\u0000"}"#)
        #expect(e?.description.contains(#""bad\nvalue\u0000""#) == true)
        #expect(e?.description.contains("\n") == false)
    }

    @Test func describesBytesThatCannotBePrinted() {
        let e = #expect(throws: JSONDecodingError.self) { try FastJSONDecoder().decode(JSONValue.self, from: [0x01]) }
        #expect(e?.description == "at byte 0: unexpected byte 0x01, expected a JSON value")
    }
}
