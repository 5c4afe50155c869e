import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

@Suite(.timeLimit(.minutes(2))) struct DecoderBehaviourTests {
    let decoder = FastJSONDecoder()

    func accepts(_ text: String) -> Bool { (try? decoder.decode(JSONValue.self, from: text)) != nil }
    func accepts(_ bytes: [UInt8]) -> Bool { (try? decoder.decode(JSONValue.self, from: bytes)) != nil }

    // MARK: Strings, escapes and UTF-8

    @Test func rejectsLoneSurrogateEscape() {
        #expect(!accepts(#"["\ud800"]"#))
        #expect(!accepts(#"["\udc00"]"#))
        #expect(!accepts(#"["\ud800\u0041"]"#))
        #expect(!accepts(#"["\ud800\ud800"]"#))
        #expect(!accepts(#"["\udc00\ud800"]"#))
        #expect(!accepts(#"{"\ud800":1}"#))
    }

    @Test func decodesSurrogatePairEscapeToOneScalar() throws {
        #expect(try decoder.decode(String.self, from: #""\ud83d\ude00""#) == "😀")
        #expect(try decoder.decode(String.self, from: #""\uD834\uDD1E""#) == "𝄞")
    }

    @Test func decodesEveryEscape() throws {
        let s = try decoder.decode(String.self, from: #""\"\\\/\b\f\n\r\t\u0000\u00e9\u20AC""#)
        #expect(s == "\"\\/\u{08}\u{0C}\n\r\t\u{0}é€")
    }

    @Test func rejectsInvalidEscapes() {
        for bad in [#""\x""#, #""\u12""#, #""\u12G4""#, #""\""#, #""\U0041""#, #""\'""#, "\"\\\u{0}\""] {
            #expect(!accepts(bad), "\(bad)")
        }
    }

    @Test func rejectsRawControlCharactersInStrings() {
        for b: UInt8 in 0..<0x20 {
            #expect(!accepts([0x22, b, 0x22]), "byte \(b)")
        }
        #expect(accepts([0x22, 0x7F, 0x22]))  // DEL needs no escape
    }

    @Test func rejectsOverlongUTF8() {
        #expect(!accepts([0x22, 0xC0, 0xAF, 0x22]))             // '/' in two bytes
        #expect(!accepts([0x22, 0xC1, 0xBF, 0x22]))
        #expect(!accepts([0x22, 0xE0, 0x80, 0xAF, 0x22]))       // three bytes
        #expect(!accepts([0x22, 0xF0, 0x80, 0x80, 0xAF, 0x22])) // four bytes
    }

    @Test func rejectsUTF8EncodedSurrogates() {
        #expect(!accepts([0x22, 0xED, 0xA0, 0x80, 0x22]))  // U+D800
        #expect(!accepts([0x22, 0xED, 0xBF, 0xBF, 0x22]))  // U+DFFF
        #expect(accepts([0x22, 0xED, 0x9F, 0xBF, 0x22]))   // U+D7FF is fine
    }

    @Test func rejectsCodePointsAboveU10FFFF() {
        #expect(!accepts([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22]))
        #expect(!accepts([0x22, 0xF5, 0x80, 0x80, 0x80, 0x22]))
        #expect(accepts([0x22, 0xF4, 0x8F, 0xBF, 0xBF, 0x22]))  // U+10FFFF
    }

    @Test func rejectsTruncatedAndStrayUTF8() {
        #expect(!accepts([0x22, 0xC3, 0x22]))
        #expect(!accepts([0x22, 0xE2, 0x82, 0x22]))
        #expect(!accepts([0x22, 0x80, 0x22]))
        #expect(!accepts([0x22, 0xFF, 0x22]))
        #expect(!accepts([0x22, 0xC3]))
    }

    @Test func acceptsValidMultibyteText() throws {
        let text = "é€😀日本語\u{10FFFF}"
        #expect(try decoder.decode(String.self, from: "\"\(text)\"") == text)
    }

    // MARK: Structure

    @Test func rejectsEmptyAndWhitespaceOnlyInput() {
        #expect(!accepts(""))
        #expect(!accepts(" \n\t\r"))
    }

    @Test func acceptsSurroundingWhitespaceAndTopLevelScalars() throws {
        #expect(try decoder.decode(JSONValue.self, from: " \n\t\r{}\r\n ") == .object([:]))
        #expect(try decoder.decode(Int.self, from: " 42 ") == 42)
        #expect(try decoder.decode(JSONValue.self, from: "null") == .null)
    }

    @Test func rejectsMoreThanOneValue() {
        #expect(!accepts("{} {}"))
        #expect(!accepts("1 2"))
        #expect(!accepts(#"{"type":"ping"}x"#))
        #expect(!accepts("[]]"))
    }

    @Test func rejectsByteOrderMarkAndNonJSONWhitespace() {
        #expect(!accepts([0xEF, 0xBB, 0xBF, 0x7B, 0x7D]))
        #expect(!accepts([0x0C, 0x7B, 0x7D]))           // form feed is not JSON whitespace
        #expect(!accepts([0xC2, 0xA0, 0x7B, 0x7D]))     // nor is NO-BREAK SPACE
    }

    @Test func enforcesDepthLimitWithAnError() throws {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(accepts(ok))
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        let error = #expect(throws: JSONDecodingError.self) { try decoder.decode(JSONValue.self, from: tooDeep) }
        #expect(error?.offset == 512)
        let objects = String(repeating: #"{"a":"#, count: 600) + "1" + String(repeating: "}", count: 600)
        #expect(!accepts(objects))
        let shallow = FastJSONDecoder(maxDepth: 2)
        #expect((try? shallow.decode(JSONValue.self, from: "[[1]]")) != nil)
        #expect((try? shallow.decode(JSONValue.self, from: "[[[1]]]")) == nil)
    }

    @Test func decodesDeepValuesWithoutRecursion() async throws {
        // Built and compared on a cooperative-pool thread with a small stack.
        let deep = String(repeating: "[", count: 512) + "1" + String(repeating: "]", count: 512)
        let value = try FastJSONDecoder().decode(JSONValue.self, from: deep)
        var v = value
        var depth = 0
        while case .array(let a) = v { v = a[0]; depth += 1 }
        #expect(depth == 512)
        #expect(RawJSON(value).text == deep)
    }

    @Test func validatesMembersTheTypeSkips() {
        struct Ping: Decodable { var type: String }
        #expect((try? decoder.decode(Ping.self, from: #"{"type":"ping","junk":[1,2,{"a":tru}]}"#)) == nil)
        #expect((try? decoder.decode(Ping.self, from: #"{"type":"ping","junk":"\ud800"}"#)) == nil)
        #expect((try? decoder.decode(Ping.self, from: #"{"type":"ping","junk":01}"#)) == nil)
        #expect((try? decoder.decode(Ping.self, from: #"{"type":"ping","junk":[1,2,{"a":true}]}"#))?.type == "ping")
    }

    @Test func rejectsMalformedNumbers() {
        for bad in ["01", "-", "-01", "1.", ".5", "1e", "1e+", "+1", "0x10", "1.5e", "NaN", "Infinity", "-Infinity", "1_000", "١"] {
            #expect(!accepts(bad), "\(bad)")
        }
        for good in ["0", "-0", "0.0", "1e5", "1E+5", "1e-5", "-12.5e-3", "123456789012345678901234567890"] {
            #expect(accepts(good), "\(good)")
        }
    }

    // MARK: Numbers into Swift types

    @Test func decodesIntegersOfEveryWidthWithOverflowChecks() throws {
        #expect(try decoder.decode(Int8.self, from: "-128") == -128)
        #expect((try? decoder.decode(Int8.self, from: "128")) == nil)
        #expect(try decoder.decode(UInt8.self, from: "255") == 255)
        #expect((try? decoder.decode(UInt8.self, from: "-1")) == nil)
        #expect(try decoder.decode(Int16.self, from: "-32768") == .min)
        #expect(try decoder.decode(UInt16.self, from: "65535") == .max)
        #expect(try decoder.decode(Int32.self, from: "-2147483648") == .min)
        #expect((try? decoder.decode(Int32.self, from: "2147483648")) == nil)
        #expect(try decoder.decode(UInt32.self, from: "4294967295") == .max)
        #expect(try decoder.decode(Int64.self, from: "-9223372036854775808") == .min)
        #expect(try decoder.decode(Int64.self, from: "9223372036854775807") == .max)
        #expect((try? decoder.decode(Int64.self, from: "9223372036854775808")) == nil)
        #expect(try decoder.decode(UInt64.self, from: "18446744073709551615") == .max)
        #expect((try? decoder.decode(UInt64.self, from: "18446744073709551616")) == nil)
        #expect((try? decoder.decode(UInt64.self, from: "99999999999999999999999")) == nil)
        #expect(try decoder.decode(Int.self, from: "-0") == 0)
        #expect(try decoder.decode(UInt.self, from: "-0") == 0)
        #expect(try decoder.decode([Int].self, from: "[1,-2,3]") == [1, -2, 3])
    }

    @Test func decodesIntegralNumbersWrittenWithFractionOrExponent() throws {
        #expect(try decoder.decode(Int.self, from: "1e2") == 100)
        #expect(try decoder.decode(Int.self, from: "10.0") == 10)
        #expect(try decoder.decode(Int.self, from: "1.5e1") == 15)
        #expect(try decoder.decode(Int.self, from: "-2500e-2") == -25)
        #expect(try decoder.decode(UInt64.self, from: "1.8446744073709551615e19") == .max)
        #expect(try decoder.decode(Int.self, from: "0e999999999") == 0)
        #expect((try? decoder.decode(Int.self, from: "1.5")) == nil)
        #expect((try? decoder.decode(Int.self, from: "1e-1")) == nil)
        #expect((try? decoder.decode(Int.self, from: "1e19")) == nil)
        #expect((try? decoder.decode(Int.self, from: "1e999999999999")) == nil)
        #expect((try? decoder.decode(Int.self, from: "1.0000000000000000000001")) == nil)
    }

    @Test func decodesFloatingPoint() throws {
        #expect(try decoder.decode(Double.self, from: "1.5") == 1.5)
        #expect(try decoder.decode(Double.self, from: "-0") == 0 && (try decoder.decode(Double.self, from: "-0")).sign == .minus)
        #expect(try decoder.decode(Double.self, from: "12345678901234567890") == 12345678901234567890.0)
        #expect(try decoder.decode(Double.self, from: "1e-400") == 0)
        #expect(try decoder.decode(Double.self, from: "0.1") == 0.1)
        #expect(try decoder.decode(Float.self, from: "0.25") == 0.25)
        #expect((try? decoder.decode(Double.self, from: "1e400")) == nil)
        #expect((try? decoder.decode(Float.self, from: "1e39")) == nil)
        #expect((try? decoder.decode(Double.self, from: "\"1\"")) == nil)
    }

    // MARK: Keys and containers

    @Test func aTypeRefusesRepeatedKeysButJSONValueKeepsAll() throws {
        struct T: Decodable { var a: Int }
        #expect(throws: JSONDecodingError.self) { try decoder.decode(T.self, from: #"{"a":1,"a":2}"#) }
        let value = try decoder.decode(JSONValue.self, from: #"{"a":1,"b":true,"a":2}"#)
        guard case .object(let o) = value else { Issue.record("not an object"); return }
        #expect(o.keys == ["a", "b", "a"])
        #expect(o["a"] == 2)
        #expect(RawJSON(value).text == #"{"a":1,"b":true,"a":2}"#)
    }

    @Test func matchesKeysWrittenWithEscapes() throws {
        struct T: Decodable { var type: String; var héllo: Int }
        let t = try decoder.decode(T.self, from: #"{"\u0074ype":"x","h\u00e9llo":5}"#)
        #expect(t.type == "x" && t.héllo == 5)
    }

    @Test func decodesOptionalsAndNulls() throws {
        struct T: Decodable, Equatable { var a: Int?; var b: String?; var c: [Int?] }
        #expect(try decoder.decode(T.self, from: #"{"a":null,"c":[1,null,3]}"#) == T(a: nil, b: nil, c: [1, nil, 3]))
        let error = #expect(throws: JSONDecodingError.self) { try decoder.decode(T.self, from: #"{"a":1}"#) }
        #expect(error?.description == #"missing field "c""#)
    }

    @Test func decodesNestedStructsArraysAndDictionaries() throws {
        struct Check: Codable, Equatable { var id: String; var fixed: Bool }
        struct Report: Codable, Equatable { var checks: [Check]; var summary: [String: Int]; var nested: [[Double]] }
        let text = #"{"checks":[{"id":"a","fixed":false},{"id":"b","fixed":true}],"summary":{"pass":5,"warn":1},"nested":[[1.5],[],[2]]}"#
        let report = try decoder.decode(Report.self, from: text)
        #expect(report == Report(checks: [.init(id: "a", fixed: false), .init(id: "b", fixed: true)],
                                 summary: ["pass": 5, "warn": 1], nested: [[1.5], [], [2]]))
        #expect(try JSONDecoder().decode(Report.self, from: Data(text.utf8)) == report)
        #expect(try decoder.decode(Report.self, from: FastJSONEncoder().encode(report)) == report)
    }

    @Test func reportsPathsInsideArrays() {
        struct Check: Decodable { var id: String }
        struct Report: Decodable { var checks: [Check] }
        let error = decodeError(Report.self, #"{"checks":[{"id":"a"},{"id":"b"},{"id":"c"},{"id":7}]}"#)
        #expect(error?.description == "checks[3].id: expected a string, found a number")
        let missing = decodeError(Report.self, #"{"checks":[{"id":"a"},{}]}"#)
        #expect(missing?.description == #"checks[1]: missing field "id""#)
    }

    @Test func decodesFromAllThreeInputForms() throws {
        let text = #"{"type":"ping"}"#
        #expect(try decoder.decode(IpcRequest.self, from: text) == .ping)
        #expect(try decoder.decode(IpcRequest.self, from: Array(text.utf8)) == .ping)
        let viaPointer = try Array(text.utf8).withUnsafeBytes { try decoder.decode(IpcRequest.self, from: $0) }
        #expect(viaPointer == .ping)
        // A Substring-backed (non-contiguous-native) String works too.
        let sub = String("xx" + text + "yy".dropFirst(0)).dropFirst(2).dropLast(2)
        #expect(try decoder.decode(IpcRequest.self, from: String(sub)) == .ping)
    }

    @Test func reusesOneDecoderAcrossManyFramesAndFailures() throws {
        let d = FastJSONDecoder()
        for i in 0..<2_000 {
            if i % 3 == 0 { _ = try? d.decode(IpcRequest.self, from: #"{"type":"ping""#) }
            let big = String(repeating: "x\\n", count: i % 300)
            let frame = #"{"type":"kill","reason":""# + big + #""}"#
            #expect(try d.decode(IpcRequest.self, from: frame) == .kill(reason: String(repeating: "x\n", count: i % 300)))
        }
    }

    @Test func servesReentrantDecodesWithATemporaryDecoder() throws {
        let box = ReentrancyBox()
        struct Inner: Decodable {
            var text: String
            init(from d: any Decoder) throws {
                let c = try d.singleValueContainer()
                let s = try c.decode(String.self)
                // Decode something else with the same decoder, mid-decode.
                text = try ReentrancyBox.shared.decoder.decode(String.self, from: "\"" + s + "!\"")
            }
        }
        ReentrancyBox.shared = box
        struct Outer: Decodable { var a: Inner; var b: String }
        let o = try box.decoder.decode(Outer.self, from: #"{"a":"hi","b":"there"}"#)
        #expect(o.a.text == "hi!" && o.b == "there")
    }

    @Test func supportsSuperDecoderAndNestedContainers() throws {
        struct T: Decodable {
            var x: Int
            var y: [String]
            var inner: Int
            enum K: String, CodingKey { case x, y, z, inner }
            enum Z: String, CodingKey { case inner }
            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: K.self)
                x = try Int(from: c.superDecoder(forKey: .x))
                var u = try c.nestedUnkeyedContainer(forKey: .y)
                y = []
                while !u.isAtEnd { y.append(try u.decode(String.self)) }
                inner = try c.nestedContainer(keyedBy: Z.self, forKey: .z).decode(Int.self, forKey: .inner)
            }
        }
        let t = try decoder.decode(T.self, from: #"{"x":3,"y":["a","b"],"z":{"inner":9}}"#)
        #expect(t.x == 3 && t.y == ["a", "b"] && t.inner == 9)
    }
}

final class ReentrancyBox {
    nonisolated(unsafe) static var shared: ReentrancyBox!
    let decoder = FastJSONDecoder()
}
