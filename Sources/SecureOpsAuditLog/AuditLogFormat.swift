import Crypto
import SecureOpsJSON

/// The on-disk format of the signed audit log, shared by the writer and the
/// verifier so the two can never disagree.
///
/// One record per line:
///
/// ```
/// {"seq":7,"time":"2026-11-29T04:27:13.123Z","event":"kill","fields":{...},"prev":"<64 hex>","mac":"<64 hex>"}
/// ```
///
/// - `prev` is the SHA-256 of the previous line's bytes (without its
///   newline); the first record links to `AuditLogFormat.genesis`.
/// - `mac` is HMAC-SHA256, under the key in `audit.key`, of the line with
///   the `,"mac":"…"` member cut out (that is, the bytes before it plus the
///   closing `}`). Verifying needs no re-encoding: the signed bytes are the
///   bytes on disk.
/// - Every string is written by `JSONWriter`, which escapes control
///   characters, so a newline inside a reason stays inside its record.
public enum AuditLogFormat {
    public static let logFileName = "audit.log"
    public static let keyFileName = "audit.key"
    public static let headFileName = "audit.head"
    /// Prefix of a damaged log moved aside at start.
    public static let brokenPrefix = "audit.log.broken-"
    /// What the first record's `prev` is.
    public static let genesis = String(repeating: "0", count: 64)
    public static let keyBytes = 32
    /// Longest line the verifier accepts; the writer clips free text far
    /// below it (`AuditText.clip`).
    public static let maxLineBytes = 1 << 20

    /// `,"mac":"` + 64 hex digits + `"}`.
    static let macSuffixLength = 8 + 64 + 2
    static let macPrefix: [UInt8] = Array(#","mac":""#.utf8)

    /// Builds one signed line (without the newline).
    static func signedLine(
        seq: UInt64, timeMilliseconds: Int64, event: String, fields: JSONObject, prev: String, key: SymmetricKey
    ) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.key("seq")
        writer.uint(seq)
        writer.key("time")
        writer.timestamp(millisecondsSinceEpoch: timeMilliseconds)
        writer.key("event")
        writer.string(event)
        writer.key("fields")
        writer.value(.object(fields))
        writer.key("prev")
        writer.string(prev)
        // The MAC covers exactly these bytes plus the closing brace.
        var unsigned = writer.bytes
        unsigned.append(UInt8(ascii: "}"))
        let mac = HMAC<SHA256>.authenticationCode(for: unsigned, using: key)
        var line = writer.bytes
        line.append(contentsOf: macPrefix)
        line.append(contentsOf: Hex.encode(mac))
        line.append(UInt8(ascii: "\""))
        line.append(UInt8(ascii: "}"))
        return line
    }

    /// SHA-256 of a line, as the next record's `prev`.
    static func hash(_ line: some Collection<UInt8>) -> String {
        String(decoding: Hex.encode(SHA256.hash(data: Array(line))), as: UTF8.self)
    }

    /// Checks a line's MAC and shape and returns its record; the error says
    /// what is wrong in words an operator can act on.
    static func openLine(_ line: ArraySlice<UInt8>, key: SymmetricKey) throws(RecordProblem) -> AuditRecord {
        guard line.count > macSuffixLength + 2, line.last == UInt8(ascii: "}") else {
            throw .unparsable("not a signed record (no \"mac\" member at its end)")
        }
        let suffixStart = line.endIndex - macSuffixLength
        guard line[suffixStart..<suffixStart + macPrefix.count].elementsEqual(macPrefix),
              line[line.endIndex - 2] == UInt8(ascii: "\""),
              let mac = Hex.decode(line[(suffixStart + macPrefix.count)..<(line.endIndex - 2)]), mac.count == 32
        else {
            throw .unparsable("not a signed record (no \"mac\" member at its end)")
        }
        var unsigned = Array(line[..<suffixStart])
        unsigned.append(UInt8(ascii: "}"))
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: unsigned, using: key) else {
            throw .badMAC
        }
        // Signed by our key: from here on a failure means a writer bug or a
        // key shared with something else, but it is still reported, not trusted.
        guard case .object(let object)? = try? JSONValue(parsing: unsigned) else {
            throw .unparsable("signed, but not a JSON object")
        }
        guard case .number(let seqNumber)? = object["seq"], let seq = seqNumber.uint64Value else {
            throw .unparsable("signed, but \"seq\" is missing or not an unsigned integer")
        }
        guard case .string(let time)? = object["time"], case .string(let event)? = object["event"],
              case .object(let fields)? = object["fields"], case .string(let prev)? = object["prev"],
              prev.utf8.count == 64, Hex.decode(Array(prev.utf8)) != nil
        else {
            throw .unparsable("signed, but \"time\", \"event\", \"fields\" or \"prev\" is missing or malformed")
        }
        return AuditRecord(seq: seq, time: time, event: event, fields: fields, prev: prev)
    }
}

/// One record as read back from the log.
public struct AuditRecord: Sendable, Equatable {
    public var seq: UInt64
    public var time: String
    public var event: String
    public var fields: JSONObject
    public var prev: String
}

/// Why one line is not a valid record.
enum RecordProblem: Error, Equatable, CustomStringConvertible {
    case unparsable(String)
    case badMAC

    var description: String {
        switch self {
        case .unparsable(let why): "unparsable line: \(why)"
        case .badMAC: "MAC mismatch: the record was edited after it was written (or signed with another key)"
        }
    }
}

/// Lowercase hexadecimal.
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return out
    }

    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 2)
        var high: UInt8?
        for character in text {
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character - UInt8(ascii: "a") + 10
            default: return nil // uppercase is not what the writer writes
            }
            if let h = high {
                out.append(h << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return out
    }
}

/// Keeps free text in records bounded: a 1 MiB kill reason must not make a
/// 1 MiB log line (and the verifier's line limit must hold for any input).
public enum AuditText {
    public static let maxBytes = 4096

    /// `text`, cut on a character boundary to at most `limit` UTF-8 bytes,
    /// with "…" marking the cut.
    public static func clip(_ text: String, limit: Int = maxBytes) -> String {
        guard text.utf8.count > limit else { return text }
        var result = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            if used + size > limit - 3 { break }
            result.append(character)
            used += size
        }
        return result + "…"
    }
}
