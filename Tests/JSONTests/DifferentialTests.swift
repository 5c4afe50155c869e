import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// Differential tests against Foundation's `JSONSerialization` (and
/// `JSONDecoder` for `IpcRequest`): same accept/reject, same values.
///
/// Where RFC 8259 and Foundation disagree we follow the RFC; each such case
/// is listed in `rfcDisagreement(_:)` and is the only kind of difference
/// allowed.
@Suite(.timeLimit(.minutes(2))) struct DifferentialTests {
    /// Why Foundation's verdict on `input` may differ from ours, or nil when
    /// it must not.
    static func rfcDisagreement(_ input: [UInt8]) -> String? {
        do {
            let value = try FastJSONDecoder().decode(JSONValue.self, from: input)
            // We accept, Foundation rejects.
            if containsNumber(value, where: { !$0.doubleValue.isFinite }) {
                return "a number beyond Double's range: RFC 8259 §6 sets no limit (we keep the text)"
            }
            return nil
        } catch let error as JSONDecodingError {
            // We reject, Foundation accepts.
            let reason = error.reason
            if reason.contains("UTF-8") { return "invalid UTF-8: RFC 8259 §8.1 requires UTF-8" }
            if reason.contains("surrogate") { return "a lone surrogate escape: RFC 8259 §8.2, no Unicode scalar" }
            if reason.contains("control character") { return "a raw control character in a string: RFC 8259 §7" }
            if reason.contains("nesting deeper") { return "our depth limit (RFC 8259 §9 allows one)" }
            if reason == "expected a string key after ',', found '}'" || reason == "unexpected ']', expected a JSON value" {
                return "a trailing comma: not in RFC 8259's grammar (§4, §5)"
            }
            return nil
        } catch {
            return nil
        }
    }

    static func containsNumber(_ value: JSONValue, where predicate: (JSONNumber) -> Bool) -> Bool {
        switch value {
        case .number(let n): return predicate(n)
        case .array(let a): return a.contains { containsNumber($0, where: predicate) }
        case .object(let o): return o.members.contains { containsNumber($0.value, where: predicate) }
        default: return false
        }
    }

    static func foundationParse(_ input: [UInt8]) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(input), options: [.fragmentsAllowed])
    }

    /// Whether our value and Foundation's are the same JSON value (objects
    /// compared as dictionaries, the last duplicate key winning; numbers by
    /// value).
    static func same(_ ours: JSONValue, _ theirs: Any) -> Bool {
        switch ours {
        case .null:
            return theirs is NSNull
        case .bool(let b):
            if let n = theirs as? NSNumber, !(theirs is Bool) { return false && n.boolValue == b }
            return (theirs as? Bool) == b
        case .number(let n):
            guard let t = theirs as? NSNumber, !(theirs is Bool) || isNumericNSNumber(t) else {
                if let d = theirs as? Decimal { return Double(n.text) == NSDecimalNumber(decimal: d).doubleValue }
                return false
            }
            if let i = n.int64Value { return t.int64Value == i || Double(i) == t.doubleValue }
            if let u = n.uint64Value { return t.uint64Value == u || Double(u) == t.doubleValue }
            let d = n.doubleValue
            let e = t.doubleValue
            return d == e || abs(d - e) <= abs(d) * 1e-15
        case .string(let s):
            return (theirs as? String) == s
        case .array(let elements):
            guard let a = theirs as? [Any], a.count == elements.count else { return false }
            return zip(elements, a).allSatisfy { same($0, $1) }
        case .object(let object):
            guard let d = theirs as? [String: Any] else { return false }
            var lastWins: [String: JSONValue] = [:]
            for m in object.members { lastWins[m.key] = m.value }
            guard lastWins.count == d.count else { return false }
            return lastWins.allSatisfy { key, value in d[key].map { same(value, $0) } ?? false }
        }
    }

    static func isNumericNSNumber(_ n: NSNumber) -> Bool {
        String(cString: n.objCType) != "c"
    }

    /// Compares the verdicts and values of both parsers on `input`.
    static func compare(_ input: [UInt8], _ label: String, disagreements: inout [String: Int]) {
        let ours = try? FastJSONDecoder().decode(JSONValue.self, from: input)
        let theirs = foundationParse(input)
        if (ours != nil) != (theirs != nil) {
            if let why = rfcDisagreement(input) {
                disagreements[why, default: 0] += 1
                return
            }
            Issue.record("\(label): ours \(ours == nil ? "rejects" : "accepts"), Foundation \(theirs == nil ? "rejects" : "accepts"): \(String(decoding: input, as: UTF8.self).debugDescription) \(input.prefix(80))")
            return
        }
        if let ours, let theirs, !same(ours, theirs) {
            Issue.record("\(label): values differ: ours \(ours.jsonText), Foundation \(theirs): \(input)")
        }
    }

    @Test func agreesWithJSONSerializationOnRandomDocuments() {
        var gen = RandomJSON(seed: 0xD1FF)
        var disagreements: [String: Int] = [:]
        for i in 0..<2_000 {
            let value = gen.value()
            var writer = JSONWriter()
            writer.value(value)
            Self.compare(writer.bytes, "document \(i)", disagreements: &disagreements)
        }
        #expect(disagreements.isEmpty, "\(disagreements)")
    }

    static let frames: [String] = [
        #"{"type":"ping"}"#,
        #"{"type":"audit","deep":true,"fix":false,"json":true}"#,
        #"{"type":"kill","reason":"manual trip"}"#,
        #"{"type":"kill","reason":null}"#,
        #"{"type":"subscribe","since":41}"#,
        #"{"type":"alerts","limit":10}"#,
        #"{"type":"publish","alert":{"severity":"high","source":"fs-watch","message":"ssh key read","details":{"path":"/home/a/.ssh/id_ed25519"}}}"#,
        #"{"type":"publish","alert":{"severity":"low","source":"n\u00e9t","message":"caf\u00e9 \"q\" \ud83d\ude00 日本 tab\t","details":{"a":[1,-2.5e3,0,null,true,false],"b":{"c":"\n"},"n":18446744073709551615}}}"#,
    ]

    /// Byte flips, truncations, insertions and deletions of request frames.
    static func mutations(seed: UInt64, count: Int) -> [[UInt8]] {
        var rng = SplitMix64(seed: seed)
        let interesting: [UInt8] = [0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x30, 0x31, 0x2D, 0x2E, 0x65, 0x45,
                                    0x2B, 0x75, 0x6E, 0x74, 0x66, 0x20, 0x0A, 0x0D, 0x09, 0x00, 0x01, 0x1F, 0x7F,
                                    0x80, 0xBF, 0xC0, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xF5, 0xFF]
        var out: [[UInt8]] = []
        for i in 0..<count {
            var f = Array(frames[i % frames.count].utf8)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let at = Int.random(in: 0..<f.count, using: &rng)
                let byte = Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
                switch Int.random(in: 0...4, using: &rng) {
                case 0: f[at] = byte
                case 1: f[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                case 2: f.insert(byte, at: at)
                case 3: if f.count > 1 { f.remove(at: at) }
                default: f = Array(f.prefix(at))
                }
                if f.isEmpty { break }
            }
            out.append(f)
        }
        return out
    }

    @Test func agreesWithJSONSerializationOnMutatedFrames() {
        var disagreements: [String: Int] = [:]
        for (i, input) in Self.mutations(seed: 0xBAD, count: 20_000).enumerated() {
            Self.compare(input, "mutation \(i)", disagreements: &disagreements)
        }
        print("RFC 8259 vs JSONSerialization disagreements followed per the RFC: \(disagreements)")
    }

    @Test func agreesWithJSONDecoderOnMutatedRequestFrames() {
        let fast = FastJSONDecoder()
        let foundation = JSONDecoder()
        var disagreements: [String: Int] = [:]
        var accepted = 0
        for (i, input) in Self.mutations(seed: 0xF00D, count: 20_000).enumerated() {
            let ours = try? fast.decode(IpcRequest.self, from: input)
            let theirs = try? foundation.decode(IpcRequest.self, from: Data(input))
            if ours != nil { accepted += 1 }
            if (ours != nil) != (theirs != nil) {
                if let why = Self.rfcDisagreement(input) ?? Self.decoderDisagreement(input) {
                    disagreements[why, default: 0] += 1
                    continue
                }
                Issue.record("mutation \(i): ours \(ours.map { "\($0)" } ?? "rejects"), Foundation \(theirs.map { "\($0)" } ?? "rejects"): \(String(decoding: input, as: UTF8.self).debugDescription)")
            } else if let ours, let theirs, !Self.sameRequest(ours, theirs) {
                Issue.record("mutation \(i): ours \(ours), Foundation \(theirs)")
            }
        }
        #expect(accepted > 500, "the mutations should leave many frames valid")
        print("IpcRequest disagreements with JSONDecoder, explained: \(disagreements)")
    }

    /// Differences in how a valid document maps to Swift values.
    static func decoderDisagreement(_ input: [UInt8]) -> String? {
        let ours = Result { try FastJSONDecoder().decode(IpcRequest.self, from: input) }
        if case .failure(let error as JSONDecodingError) = ours, error.offset != nil,
           foundationParse(input) == nil {
            // Foundation's JSONDecoder accepted text that is not JSON.
            return "Foundation's JSONDecoder does not validate members it skips; RFC 8259 and we validate the whole text"
        }
        return nil
    }

    /// Equal requests; `details` compared as values (Foundation's path
    /// re-encodes them).
    static func sameRequest(_ a: IpcRequest, _ b: IpcRequest) -> Bool {
        if case .publish(let x) = a, case .publish(let y) = b {
            guard x.severity == y.severity, x.source == y.source, x.message == y.message else { return false }
            guard let dx = x.details, let dy = y.details else { return x.details == nil && y.details == nil }
            guard let theirs = foundationParse(dy.bytes) else { return false }
            return same(dx.value, theirs)
        }
        return a == b
    }
}
