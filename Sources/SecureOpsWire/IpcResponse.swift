import SecureOpsJSON
/// One frame from the daemon (WIRE.md, "Responses and pushed frames").
public enum IpcResponse: Sendable, Equatable {
    /// Success; the payload's members sit beside `"type":"ok"`.
    case ok(JSONObject)
    /// An in-band failure. `skipped`/`resumeAt` are set on a lag notice.
    case err(message: String, skipped: UInt64? = nil, resumeAt: UInt64? = nil)
    /// One pushed alert on a subscription.
    case alert(MonitorAlert)

    /// Whether this frame is the lag notice of a subscription.
    public var isLagNotice: Bool {
        if case .err(_, .some, _) = self { return true }
        return false
    }
}

extension IpcResponse: Codable {
    enum CodingKeys: String, CodingKey {
        case type, message, skipped, resumeAt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let tag = try container.decode(String.self, forKey: .type)
        switch tag {
        case "ok":
            guard case .object(var object) = try JSONValue(from: decoder) else {
                throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "expected an object")
            }
            object.members.removeAll { $0.key == "type" }
            self = .ok(object)
        case "err":
            self = .err(
                message: try container.decode(String.self, forKey: .message),
                skipped: try container.decodeIfPresent(UInt64.self, forKey: .skipped),
                resumeAt: try container.decodeIfPresent(UInt64.self, forKey: .resumeAt))
        case "alert":
            self = .alert(try MonitorAlert(from: decoder))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container,
                debugDescription: "unknown response type \(jsonQuoted(tag)); expected ok, err or alert")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var writer = JSONWriter()
        write(into: &writer)
        try RawJSON(validating: writer.bytes.dropLast()).encode(to: encoder)
    }

    /// Writes the frame, newline included.
    public func write(into writer: inout JSONWriter) {
        switch self {
        case .ok(let payload):
            OkFrame.write(into: &writer) { writer in
                for member in payload.members where member.key != "type" {
                    writer.key(member.key)
                    writer.value(member.value)
                }
            }
        case .err(let message, let skipped, let resumeAt):
            ErrFrame.write(message: message, skipped: skipped, resumeAt: resumeAt, into: &writer)
        case .alert(let alert):
            AlertFrame.write(alert, into: &writer)
        }
    }
}

/// Writes `ok` frames: the one writer of them.
public enum OkFrame {
    /// `{"type":"ok"}\n`
    public static let empty: [UInt8] = Array(#"{"type":"ok"}"#.utf8) + [0x0A]

    /// `{"type":"ok",<the members `members` writes>}\n`.
    @inline(__always)
    public static func write(into writer: inout JSONWriter, members: (inout JSONWriter) -> Void) {
        writer.beginObject()
        writer.key("type")
        writer.string("ok")
        members(&writer)
        writer.endObject()
        writer.newline()
    }

    /// `{"type":"ok",<payload members>}\n`. The payload must encode as an
    /// object (WIRE.md: "The payload of ok is always a JSON object").
    public static func write<Payload: Encodable>(_ payload: Payload, into writer: inout JSONWriter) throws {
        let encoded = try FastJSONEncoder().encode(payload)
        guard encoded.first == UInt8(ascii: "{"), encoded.last == UInt8(ascii: "}") else {
            throw IpcError.codec("an ok payload must be a JSON object")
        }
        write(into: &writer) { writer in
            if encoded.count > 2 {
                writer.bytes.append(UInt8(ascii: ","))
                writer.bytes.append(contentsOf: encoded[1..<(encoded.count - 1)])
            }
        }
    }
}

/// Writes `err` frames: the one writer of them (a lag notice is one, with
/// `skipped` and `resumeAt`).
public enum ErrFrame {
    /// `{"type":"err","message":…[,"skipped":N,"resumeAt":M]}\n`.
    public static func write(message: String, skipped: UInt64? = nil, resumeAt: UInt64? = nil, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("type")
        writer.string("err")
        writer.key("message")
        writer.string(message)
        if let skipped {
            writer.key("skipped")
            writer.uint(skipped)
        }
        if let resumeAt {
            writer.key("resumeAt")
            writer.uint(resumeAt)
        }
        writer.endObject()
        writer.newline()
    }
}

/// What can go wrong talking the protocol.
public enum IpcError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No connection could be made (connect or socket setup failed), or the
    /// client was closed.
    case transport(String)
    /// A frame could not be encoded or decoded.
    case codec(String)
    /// The daemon refused this peer or this request.
    case unauthorized(String)
    /// io_uring or Unix sockets are not available here.
    case unsupportedPlatform(String)
    /// The daemon answered with an `err` frame.
    case server(String)
    /// No answer within the deadline.
    case timedOut(String)
    /// The socket is served by a uid the client does not trust (someone
    /// squatting the path, say): nothing was sent.
    case untrustedServer(String)
    /// An established connection broke: the server closed it (it stopped or
    /// crashed) or a read or write on it failed. A request in flight may or
    /// may not have taken effect.
    case connectionLost(String)
    /// Reconnecting gave up: `attempts` attempts in a row failed, the last
    /// with `lastError`.
    indirect case reconnectFailed(attempts: Int, lastError: IpcError)

    public var description: String {
        switch self {
        case .transport(let why): why
        case .codec(let why): "protocol error: \(why)"
        case .unauthorized(let why): "not authorized: \(why)"
        case .unsupportedPlatform(let why): "unsupported platform: \(why)"
        case .server(let message): message
        case .timedOut(let what): "timed out: \(what)"
        case .untrustedServer(let why): why
        case .connectionLost(let why): "connection lost: \(why)"
        case .reconnectFailed(let attempts, let lastError):
            "gave up reconnecting after \(attempts) failed attempt\(attempts == 1 ? "" : "s"); the last: \(lastError)"
        }
    }
}
