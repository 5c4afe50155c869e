import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

@Suite(.timeLimit(.minutes(2))) struct RoundTripTests {
    @Test func randomValuesRoundTripThroughWriterEncoderAndRawJSON() throws {
        var gen = RandomJSON(seed: 0xC0FFEE)
        let decoder = FastJSONDecoder()
        for _ in 0..<3_000 {
            let value = gen.value()
            var writer = JSONWriter()
            writer.value(value)
            #expect(try decoder.decode(JSONValue.self, from: writer.bytes) == value)
            #expect(try FastJSONEncoder().encode(value) == writer.bytes)
            let raw = RawJSON(value)
            #expect(raw.bytes == writer.bytes)
            #expect(try RawJSON(validating: raw.bytes) == raw)
            #expect(try decoder.decode(RawJSON.self, from: raw.bytes) == raw)
            #expect(raw.value == value)
        }
    }

    @Test func numbersKeepTheirExactText() throws {
        let texts = ["18446744073709551616", "-9223372036854775809", "0.1000000000000000055511151231257827",
                     "1E+400", "-0", "-0.0e-0", "123456789012345678901234567890.5"]
        for text in texts {
            let value = try FastJSONDecoder().decode(JSONValue.self, from: "[\(text)]")
            #expect(RawJSON(value).text == "[\(text)]")
            var writer = JSONWriter()
            writer.value(value)
            #expect(try FastJSONDecoder().decode(JSONValue.self, from: writer.bytes) == value)
        }
        #expect(JSONNumber(text: "01") == nil)
        #expect(JSONNumber(text: "1.") == nil)
        #expect(JSONNumber(text: "-1.5e+3")?.doubleValue == -1500)
        #expect(JSONNumber(text: "18446744073709551615")?.uint64Value == .max)
        #expect(JSONNumber(text: "1e2")?.int64Value == 100)
        #expect(JSONNumber(text: "1.5")?.int64Value == nil)
        #expect(JSONNumber(.infinity) == nil)
    }

    @Test func codableStructsRoundTripAndFoundationReadsOurOutput() throws {
        struct Alert: Codable, Equatable {
            var sequence: UInt64
            var severity: Severity
            var source: String
            var message: String
            var details: RawJSON?
            var tags: [String]
            var score: Double
            var nested: [String: [Int]]
            var flag: Bool?
        }
        let alert = Alert(sequence: .max, severity: .critical, source: "fs-\"watch\"", message: "ssh\tkey\nread é 😀",
                          details: try RawJSON(validating: Array(#"{"path":"/home/a","n":[1,2]}"#.utf8)),
                          tags: ["a", "", "\u{1}"], score: 0.1, nested: ["x": [1, -2]], flag: nil)
        let bytes = try FastJSONEncoder().encode(alert)
        #expect(try FastJSONDecoder().decode(Alert.self, from: bytes) == alert)
        let viaFoundation = try JSONDecoder().decode(Alert.self, from: Data(bytes))
        #expect(viaFoundation.message == alert.message && viaFoundation.sequence == alert.sequence)
        // Foundation's decoder hands keys over in its own order: compare members.
        #expect(viaFoundation.details?.value["path"] == "/home/a" && viaFoundation.details?.value["n"] == [1, 2])
        // Foundation's encoder output, read by us.
        let theirs = try JSONEncoder().encode(alert)
        // (Foundation's encoder orders object keys its own way: compare members.)
        let details = try FastJSONDecoder().decode(Alert.self, from: [UInt8](theirs)).details?.value
        #expect(details?["path"] == "/home/a" && details?["n"] == [1, 2])
    }

    @Test func encoderWritesKeysInEncodeOrderAndNullForEncodeNil() throws {
        struct T: Encodable {
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: JSONCodingKey.self)
                try c.encode(2, forKey: .init(stringValue: "z"))
                try c.encodeNil(forKey: .init(stringValue: "a"))
                var nested = c.nestedContainer(keyedBy: JSONCodingKey.self, forKey: .init(stringValue: "n"))
                try nested.encode(true, forKey: .init(stringValue: "t"))
                var list = c.nestedUnkeyedContainer(forKey: .init(stringValue: "l"))
                try list.encode(1)
                try list.encodeNil()
                var inner = list.nestedContainer(keyedBy: JSONCodingKey.self)
                try inner.encode("x", forKey: .init(stringValue: "k"))
                try list.encode("end")
                try c.encode([String: Int](), forKey: .init(stringValue: "e"))
            }
        }
        let text = String(decoding: try FastJSONEncoder().encode(T()), as: UTF8.self)
        #expect(text == #"{"z":2,"a":null,"n":{"t":true},"l":[1,null,{"k":"x"},"end"],"e":{}}"#)
    }

    @Test func encoderRejectsNonFiniteDoublesAndLeavesTheWriterUnchanged() throws {
        struct T: Encodable { var a: Double; var b: [Double] }
        var writer = JSONWriter()
        writer.beginArray()
        writer.int(1)
        let before = writer.bytes
        #expect(throws: EncodingError.self) { try FastJSONEncoder().encode(T(a: 1, b: [2, .nan]), into: &writer) }
        #expect(writer.bytes == before)
        try FastJSONEncoder().encode(T(a: 1, b: [2]), into: &writer)
        writer.endArray()
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"[1,{"a":1.0,"b":[2.0]}]"#)
        #expect(throws: EncodingError.self) { try FastJSONEncoder().encode(Double.infinity) }
    }

    @Test func writerEscapesPerRFC8259() {
        var w = JSONWriter()
        w.string("\"\\/\u{08}\u{0C}\n\r\t\u{0}\u{1F}\u{7F}é€😀 plain text that is long enough for the fast path")
        #expect(String(decoding: w.bytes, as: UTF8.self)
            == #""\"\\/\b\f\n\r\t\u0000\u001f"# + "\u{7F}é€😀 plain text that is long enough for the fast path\"")
    }

    @Test func writerPlacesCommasAtAnyNesting() {
        var w = JSONWriter()
        w.beginObject()
        w.key("a"); w.beginArray(); w.beginArray(); w.endArray(); w.int(-5); w.beginObject(); w.endObject(); w.null(); w.endArray()
        w.key("b" as String); w.beginObject(); w.key("c"); w.bool(false); w.key("d"); w.double(1.5); w.endObject()
        w.key("e"); w.uint(.max)
        w.key("f"); w.double(.nan)
        w.key("g"); w.raw(RawJSON(["x": 1]))
        w.endObject()
        w.newline()
        w.beginObject(); w.key("type"); w.string("ok"); w.endObject(); w.newline()
        #expect(String(decoding: w.bytes, as: UTF8.self)
            == "{\"a\":[[],-5,{},null],\"b\":{\"c\":false,\"d\":1.5},\"e\":18446744073709551615,\"f\":null,\"g\":{\"x\":1}}\n{\"type\":\"ok\"}\n")
    }

    @Test func writerWritesSingleScalarStaticStringKeysWithOneComma() {
        var w = JSONWriter()
        w.beginObject()
        w.key("a"); w.int(1)
        let scalarKey: StaticString = "é"   // stored as a scalar, not a pointer
        w.key(scalarKey); w.int(2)
        w.endObject()
        #expect(String(decoding: w.bytes, as: UTF8.self) == #"{"a":1,"é":2}"#)
    }

    @Test func writerResetKeepsCapacity() {
        var w = JSONWriter(capacity: 4096)
        w.string(String(repeating: "x", count: 1000))
        let capacity = w.bytes.capacity
        w.reset()
        #expect(w.bytes.isEmpty && w.bytes.capacity == capacity)
        w.int(Int.min)
        #expect(String(decoding: w.bytes, as: UTF8.self) == "-9223372036854775808")
    }

    @Test func writerFormatsTimestampsLikeFoundation() throws {
        var w = JSONWriter()
        w.timestamp(millisecondsSinceEpoch: 1_795_926_433_123)
        #expect(String(decoding: w.bytes, as: UTF8.self) == #""2026-11-29T04:27:13.123Z""#)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        var rng = SplitMix64(seed: 7)
        // From 1583 on: Foundation switches to the Julian calendar before the
        // Gregorian reform, RFC 3339 (and we) use the proleptic Gregorian one.
        let samples: [Int64] = [0, -1, 951_782_400_000, 4_107_542_399_999, -2_208_988_800_000, 253_402_300_799_999]
            + (0..<2000).map { _ in Int64.random(in: -12_212_553_600_000...253_402_300_799_999, using: &rng) }
        for ms in samples {
            w.reset()
            w.timestamp(millisecondsSinceEpoch: ms)
            let ours = String(decoding: w.bytes, as: UTF8.self)
            let seconds = Double(ms.quotientFloor(1000))
            let date = Date(timeIntervalSince1970: seconds)
            let base = String(formatter.string(from: date).dropLast(5))  // without ".SSSZ"
            let millis = ms - ms.quotientFloor(1000) * 1000
            let expected = "\"" + base + "." + String(format: "%03d", millis) + "Z\""
            #expect(ours == expected, "\(ms)")
        }
        // Before 1583 and before year 0, by the proleptic Gregorian calendar.
        w.reset(); w.timestamp(millisecondsSinceEpoch: -62_135_596_800_000)  // 0001-01-01
        #expect(String(decoding: w.bytes, as: UTF8.self) == #""0001-01-01T00:00:00.000Z""#)
        w.reset(); w.timestamp(millisecondsSinceEpoch: -62_135_596_800_001)
        #expect(String(decoding: w.bytes, as: UTF8.self) == #""0000-12-31T23:59:59.999Z""#)
    }

    @Test func jsonValueDecodesFromFoundationsDecoder() throws {
        let text = #"{"a":[1,2.5,"x",null,true,{"b":-3}],"big":18446744073709551615}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(value["a"]?[2] == .string("x"))
        #expect(value["a"]?[5]?["b"] == .number(JSONNumber(-3)))
        #expect(value["big"] == .number(JSONNumber(UInt64.max)))
        let raw = try JSONDecoder().decode(RawJSON.self, from: Data(text.utf8))
        #expect(try JSONSerialization.jsonObject(with: Data(raw.bytes)) is [String: Any])
        // And Foundation's encoder writes ours.
        let back = try JSONEncoder().encode(value)
        #expect(try FastJSONDecoder().decode(JSONValue.self, from: [UInt8](back))["a"]?[1] == .number(JSONNumber(2.5)!))
    }
}

extension Int64 {
    func quotientFloor(_ d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
