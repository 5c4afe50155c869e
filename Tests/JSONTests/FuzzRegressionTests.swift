import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// The invariants of Fuzz/DecoderFuzz.swift, replayed on the checked-in
/// seeds and on inputs that fuzzing and differential testing turned up.
/// Each finding gets a line in `findings` with a note on what it exercised.
@Suite(.timeLimit(.minutes(2))) struct FuzzRegressionTests {
    static let findings: [(note: String, bytes: [UInt8])] = [
        ("trailing comma, accepted by JSONSerialization", Array(#"{"t.ype":"ping",}"#.utf8)),
        ("number beyond Double range inside details", Array(#"{"type":"publish","alert":{"severity":"low","source":"s","message":"m","details":{"n":184467440E3709551615}}}"#.utf8)),
        ("raw NUL in a skipped member, accepted by JSONDecoder", Array("{\"type\":\"kill\",\"re.ason\":\"manual tr\0i`\"}".utf8)),
        ("invalid UTF-8 in a skipped member", [0x7B, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3A, 0x22, 0x6B, 0x69, 0x6C, 0x6C, 0x22, 0x2C,
                                               0x22, 0x72, 0x22, 0x3A, 0x22, 0x80, 0x22, 0x7D]),
        ("escape at the very end", Array(#"["\"#.utf8)),
        ("\\u escape cut short at the end", Array(#"["\u00"#.utf8)),
        ("high surrogate escape at the end", Array(#"["\ud800"#.utf8)),
        ("high surrogate then a backslash at the end", Array(#"["\ud800\"#.utf8)),
        ("high surrogate then \\u cut short", Array(#"["\ud800\udc"#.utf8)),
        ("four-byte lead at the end", [0x22, 0xF0, 0x9F]),
        ("string of exactly 8 bytes then end (SWAR boundary)", Array(#""abcdefgh"#.utf8)),
        ("string of exactly 8 bytes", Array(#""abcdefgh""#.utf8)),
        ("quote at every SWAR lane", Array(#"["a","ab","abc","abcd","abcde","abcdef","abcdefg","abcdefgh","abcdefghi"]"#.utf8)),
        ("minus at the end", Array("-".utf8)),
        ("exponent sign at the end", Array("1e+".utf8)),
        ("integral value in exponent form, huge exponent", Array(#"{"type":"subscribe","since":1e99999999999999999999}"#.utf8)),
        ("zero with huge exponent", Array(#"{"type":"subscribe","since":0e-99999999999999999999}"#.utf8)),
        ("many zeros before an integral fraction", Array(#"{"type":"alerts","limit":0000.0}"#.utf8)),
        ("nested too deep inside a valid frame", Array((#"{"type":"ping","x":"# + String(repeating: "[", count: 600)).utf8)),
        ("empty key and empty string", Array(#"{"":""}"#.utf8)),
        ("duplicate type keys", Array(#"{"type":"publish","type":"ping"}"#.utf8)),
    ]

    /// The fuzz target's checks, as a test.
    static func checkInvariants(_ input: [UInt8]) {
        let decoder = FastJSONDecoder()
        var value: JSONValue?
        do {
            value = try decoder.decode(JSONValue.self, from: input)
        } catch let error as JSONDecodingError {
            #expect(error.offset != nil, "JSONValue rejected without an offset: \(error)")
            if let offset = error.offset { #expect(offset >= 0 && offset <= input.count) }
            #expect(!error.description.isEmpty)
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
        let raw = try? decoder.decode(RawJSON.self, from: input)
        let validated = try? RawJSON(validating: input)
        #expect((value != nil) == (raw != nil))
        #expect((validated != nil) == (raw != nil))
        do {
            _ = try decoder.decode(IpcRequest.self, from: input)
            #expect(value != nil)
        } catch let error as JSONDecodingError {
            if error.offset != nil { #expect(value == nil, "syntax error on valid JSON: \(error)") }
            if let offset = error.offset { #expect(offset >= 0 && offset <= input.count) }
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
        if let value, let raw {
            #expect(validated?.bytes == raw.bytes)
            var writer = JSONWriter()
            writer.value(value)
            #expect((try? decoder.decode(JSONValue.self, from: writer.bytes)) == value)
            #expect((try? FastJSONEncoder().encode(value)) == writer.bytes)
            #expect((try? decoder.decode(JSONValue.self, from: raw.bytes)) == value)
        }
    }

    @Test func findingsKeepTheirInvariants() {
        for (_, bytes) in Self.findings { Self.checkInvariants(bytes) }
    }

    @Test func checkedInFuzzSeedsKeepTheirInvariants() throws {
        let seeds = repositoryRoot.appendingPathComponent("Fuzz/seeds/decoder")
        let names = try FileManager.default.contentsOfDirectory(atPath: seeds.path)
        #expect(!names.isEmpty)
        for name in names {
            Self.checkInvariants([UInt8](try Data(contentsOf: seeds.appendingPathComponent(name))))
        }
    }

    @Test func everyPrefixOfAValidFrameIsRejectedWithAnOffsetInside() {
        let frame = Array(#"{"type":"publish","alert":{"severity":"high","source":"fs","message":"caf\u00e9 😀","details":{"a":[1,2.5e-3,true,null],"b":"\ud83d\ude00"}}}"#.utf8)
        let decoder = FastJSONDecoder()
        for n in 0..<frame.count {
            let prefix = Array(frame.prefix(n))
            let error = #expect(throws: JSONDecodingError.self) { try decoder.decode(IpcRequest.self, from: prefix) }
            if let offset = error?.offset { #expect(offset <= n) } else { Issue.record("no offset for prefix \(n)") }
        }
        #expect(throws: Never.self) { try decoder.decode(IpcRequest.self, from: frame) }
    }
}
