import Crypto
import SecureOpsJSON

/// `audit.head`: the sequence and hash of the last record known to be on
/// disk, signed, rewritten after every durable (fsync'd) record.
///
/// A hash chain alone cannot show that records were cut off its end: the
/// shorter log is still a valid chain. The head can: a log that ends before
/// the head's record has lost records. (Someone who keeps an old copy of
/// both files and the key can still roll both back together; only a copy
/// kept off the host defeats that.)
struct AuditHead: Equatable {
    var seq: UInt64
    var hash: String

    /// HMAC domain separation: a head MAC can never pass as a record MAC.
    private static let domain = Array("secureops-audit-head\n".utf8)

    /// `{"seq":N,"hash":"…"}`: the bytes the MAC covers.
    private var body: [UInt8] {
        var writer = JSONWriter(capacity: 128)
        writer.beginObject()
        writer.key("seq")
        writer.uint(seq)
        writer.key("hash")
        writer.string(hash)
        writer.endObject()
        return writer.bytes
    }

    func encoded(key: SymmetricKey) -> [UInt8] {
        let mac = HMAC<SHA256>.authenticationCode(for: Self.domain + body, using: key)
        var line = body
        line.removeLast() // reopen the object for the mac member
        line.append(contentsOf: Array(#","mac":""#.utf8))
        line.append(contentsOf: Hex.encode(mac))
        line.append(contentsOf: Array("\"}\n".utf8))
        return line
    }

    enum Problem: Error, Equatable, CustomStringConvertible {
        case unparsable
        case badMAC

        var description: String {
            switch self {
            case .unparsable: "audit.head is not a signed head record"
            case .badMAC: "audit.head has a bad MAC: it was edited or replaced"
            }
        }
    }

    static func decode(_ bytes: [UInt8], key: SymmetricKey) throws(Problem) -> AuditHead {
        var text = bytes
        while text.last == 0x0A { text.removeLast() }
        guard case .object(let object)? = try? JSONValue(parsing: text),
              case .number(let seqNumber)? = object["seq"], let seq = seqNumber.uint64Value,
              case .string(let hash)? = object["hash"], case .string(let macText)? = object["mac"],
              let mac = Hex.decode(Array(macText.utf8)), mac.count == 32
        else { throw .unparsable }
        let head = AuditHead(seq: seq, hash: hash)
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: domain + head.body, using: key) else {
            throw .badMAC
        }
        return head
    }
}
