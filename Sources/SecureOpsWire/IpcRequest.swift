import SecureOpsJSON
import Glibc

/// One request frame of the SecureOps wire contract (WIRE.md, "Requests").
///
/// Internally tagged by `"type"`; unknown fields are ignored and missing
/// optional fields take their defaults. Decodes through the engine's
/// `FastJSONDecoder` (as a `FastJSONDecodable`, like any embedder's request
/// type may) and, being plain `Decodable`, through Foundation's
/// `JSONDecoder` too.
public enum IpcRequest: Sendable, Equatable {
    case ping
    case status
    case audit(AuditOptions)
    case kill(reason: String?)
    case subscribe(since: UInt64?)
    case alerts(limit: Int?)
    case reloadPolicy
    case publish(AlertInput)

    /// The wire tag of this request, which is also the verb policies grant.
    public var verb: Verb {
        switch self {
        case .ping: .ping
        case .status: .status
        case .audit: .audit
        case .kill: .kill
        case .subscribe: .subscribe
        case .alerts: .alerts
        case .reloadPolicy: .reloadPolicy
        case .publish: .publish
        }
    }

    /// The request types of WIRE.md, by their wire tags.
    public enum Verb: String, Sendable, CaseIterable, Codable {
        case ping, status, audit, kill, subscribe, alerts, reloadPolicy, publish

        // Hand-written: the synthesized one goes through the standard
        // library's table search, several times slower on the decode path.
        public init?(rawValue: String) {
            switch rawValue {  // most frequent first
            case "ping": self = .ping
            case "publish": self = .publish
            case "status": self = .status
            case "subscribe": self = .subscribe
            case "alerts": self = .alerts
            case "audit": self = .audit
            case "kill": self = .kill
            case "reloadPolicy": self = .reloadPolicy
            default: return nil
            }
        }
    }
}

/// The options of an `audit` request.
public struct AuditOptions: Sendable, Equatable, Codable {
    public var deep: Bool
    public var fix: Bool
    public var json: Bool

    public init(deep: Bool = false, fix: Bool = false, json: Bool = false) {
        self.deep = deep
        self.fix = fix
        self.json = json
    }
}

/// An alert as a publisher submits it; the daemon assigns `sequence` and
/// `timestamp`.
public struct AlertInput: Sendable, Equatable, Codable, FastJSONDecodable {
    public var severity: Severity
    public var source: String
    public var message: String
    /// Any JSON object, or `nil` for `null`/absent. Kept as validated raw
    /// bytes: the daemon only forwards it.
    public var details: RawJSON?

    public init(severity: Severity, source: String, message: String, details: RawJSON? = nil) {
        self.severity = severity
        self.source = source
        self.message = message
        self.details = details
    }

    enum CodingKeys: String, CodingKey {
        case severity, source, message, details
    }

    public init(from decoder: any Decoder) throws {
        try self.init(container: decoder.container(keyedBy: CodingKeys.self))
    }

    /// FastJSONDecoder's path: the same logic over its concrete container.
    public init(fastJSON decoder: FastJSONValueDecoder) throws {
        try self.init(container: decoder.keyedContainer(keyedBy: CodingKeys.self))
    }

    init<C: KeyedDecodingContainerProtocol>(container: C) throws where C.Key == CodingKeys {
        severity = try container.decode(Severity.self, forKey: .severity)
        source = try container.decode(String.self, forKey: .source)
        message = try container.decode(String.self, forKey: .message)
        let details = try container.decodeIfPresent(RawJSON.self, forKey: .details)
        if let details, details.isNull {
            self.details = nil
        } else if let details, !details.isObject {
            throw DecodingError.dataCorruptedError(
                forKey: .details, in: container,
                debugDescription: "expected a JSON object or null")
        } else {
            self.details = details
        }
    }
}

extension IpcRequest: FastJSONDecodable {
    enum CodingKeys: String, CodingKey {
        case type, deep, fix, json, reason, since, limit, alert
    }

    public init(from decoder: any Decoder) throws {
        try self.init(container: decoder.container(keyedBy: CodingKeys.self))
    }

    /// FastJSONDecoder's path: the same logic over its concrete container.
    public init(fastJSON decoder: FastJSONValueDecoder) throws {
        try self.init(container: decoder.keyedContainer(keyedBy: CodingKeys.self))
    }

    /// The two frames clients send most, exactly as WIRE.md writes them,
    /// recognised without parsing. Any other spelling (spaces, extra
    /// fields) is parsed and validated as usual.
    @inline(__always)
    public static func decodeKnownFrame(_ frame: UnsafeRawBufferPointer) -> IpcRequest? {
        switch frame.count {
        case 15 where matches(frame, #"{"type":"ping"}"#): .ping
        case 17 where matches(frame, #"{"type":"status"}"#): .status
        default: nil
        }
    }

    @inline(__always)
    private static func matches(_ frame: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        memcmp(frame.baseAddress!, literal.utf8Start, literal.utf8CodeUnitCount) == 0
    }

    init<C: KeyedDecodingContainerProtocol>(container: C) throws where C.Key == CodingKeys {
        let tag = try container.decode(String.self, forKey: .type)
        guard let verb = Verb(rawValue: tag) else {
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container,
                debugDescription: "unknown request type \(jsonQuoted(tag)); expected one of "
                    + Verb.allCases.map(\.rawValue).joined(separator: ", "))
        }
        switch verb {
        case .ping:
            self = .ping
        case .status:
            self = .status
        case .audit:
            self = .audit(AuditOptions(
                deep: try container.decodeIfPresent(Bool.self, forKey: .deep) ?? false,
                fix: try container.decodeIfPresent(Bool.self, forKey: .fix) ?? false,
                json: try container.decodeIfPresent(Bool.self, forKey: .json) ?? false))
        case .kill:
            self = .kill(reason: try container.decodeIfPresent(String.self, forKey: .reason))
        case .subscribe:
            self = .subscribe(since: try container.decodeIfPresent(UInt64.self, forKey: .since))
        case .alerts:
            // Unsigned on the wire: a negative limit is a wrong field type.
            self = .alerts(limit: try container.decodeIfPresent(UInt64.self, forKey: .limit).map { Int(clamping: $0) })
        case .reloadPolicy:
            self = .reloadPolicy
        case .publish:
            self = .publish(try container.decode(AlertInput.self, forKey: .alert))
        }
    }
}

extension IpcRequest {
    /// Writes the request frame, newline included, as clients send it.
    public func write(into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("type")
        writer.string(verb.rawValue)
        switch self {
        case .ping, .status, .reloadPolicy:
            break
        case .audit(let options):
            writer.key("deep")
            writer.bool(options.deep)
            writer.key("fix")
            writer.bool(options.fix)
            writer.key("json")
            writer.bool(options.json)
        case .kill(let reason):
            writer.key("reason")
            if let reason { writer.string(reason) } else { writer.null() }
        case .subscribe(let since):
            if let since {
                writer.key("since")
                writer.uint(since)
            }
        case .alerts(let limit):
            if let limit {
                writer.key("limit")
                writer.int(limit)
            }
        case .publish(let alert):
            writer.key("alert")
            writer.beginObject()
            writer.key("severity")
            writer.string(alert.severity.rawValue)
            writer.key("source")
            writer.string(alert.source)
            writer.key("message")
            writer.string(alert.message)
            if let details = alert.details {
                writer.key("details")
                writer.raw(details)
            }
            writer.endObject()
        }
        writer.endObject()
        writer.newline()
    }

    /// The request frame as bytes, newline included.
    public var frame: [UInt8] {
        var writer = JSONWriter(capacity: 128)
        write(into: &writer)
        return writer.bytes
    }
}
