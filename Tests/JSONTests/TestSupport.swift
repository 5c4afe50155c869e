import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// The repository root, found from this file's path (Tests/JSONTests/…).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The JSONTestSuite parsing corpus, copied into the repository so tests are
/// self-contained.
let conformanceDirectory: URL = repositoryRoot
    .appendingPathComponent("Tests/JSONTests/Resources/JSONTestSuite/test_parsing")

/// Every case of the corpus as (file name, bytes). Fails loudly when the
/// corpus is missing rather than passing on nothing.
func conformanceCases(prefix: String) throws -> [(name: String, bytes: [UInt8])] {
    let names = try FileManager.default.contentsOfDirectory(atPath: conformanceDirectory.path)
        .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }
        .sorted()
    return try names.map { name in
        (name, [UInt8](try Data(contentsOf: conformanceDirectory.appendingPathComponent(name))))
    }
}

/// A small, fast, seeded generator so random tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Decodes `text` as `T`, returning the error's description on failure.
func decodeError<T: Decodable>(_ type: T.Type, _ text: String) -> JSONDecodingError? {
    do {
        _ = try FastJSONDecoder().decode(type, from: text)
        return nil
    } catch let error as JSONDecodingError {
        return error
    } catch {
        Issue.record("unexpected error type \(Swift.type(of: error)): \(error)")
        return nil
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Random JSON values: every kind, nested, with escapes, non-ASCII text,
/// big and small numbers, and duplicate keys.
struct RandomJSON {
    var rng: SplitMix64

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

    mutating func string() -> String {
        let pieces: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\r", "\t", "\u{08}", "\u{0C}",
                                "\u{01}", "\u{1F}", "\u{7F}", "é", "ß", "€", "日本", "😀", "\u{FFFD}", "\u{10FFFF}",
                                "key", "path", "/home/a/.ssh/id_ed25519", "ssh key read", "\u{2028}", "\u{0}"]
        var s = ""
        for _ in 0..<int(0...8) { s += pieces[int(0...(pieces.count - 1))] }
        return s
    }

    mutating func number() -> JSONNumber {
        switch int(0...7) {
        case 0: return JSONNumber(int(-1000...1000))
        case 1: return JSONNumber(Int64.random(in: .min ... .max, using: &rng))
        case 2: return JSONNumber(UInt64.random(in: 0 ... .max, using: &rng))
        case 3: return JSONNumber(Double.random(in: -1e6...1e6, using: &rng))!
        case 4: return JSONNumber(text: "18446744073709551616123")!        // beyond UInt64
        case 5: return JSONNumber(text: "-0.1000000000000000055511151231257827")!
        case 6: return JSONNumber(text: "1.5E+300")!
        default: return JSONNumber(text: "-0")!
        }
    }

    mutating func value(depth: Int = 0) -> JSONValue {
        let kind = depth > 4 ? int(0...3) : int(0...5)
        switch kind {
        case 0: return .null
        case 1: return .bool(int(0...1) == 1)
        case 2: return .number(number())
        case 3: return .string(string())
        case 4: return .array((0..<int(0...4)).map { _ in value(depth: depth + 1) })
        default:
            var object = JSONObject()
            for _ in 0..<int(0...4) {
                object.members.append(.init(key: string(), value: value(depth: depth + 1)))
            }
            return .object(object)
        }
    }
}
