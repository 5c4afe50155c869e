/// One alert as subscribers receive it (WIRE.md, "Types").
public struct MonitorAlert: Sendable, Equatable, Codable {
    /// Strictly increasing from 1, assigned by the daemon.
    public var sequence: UInt64
    /// RFC 3339, UTC, millisecond precision, set by the daemon.
    public var timestamp: String
    public var severity: Severity
    public var source: String
    public var message: String
    /// A JSON object, or `nil` for `null`.
    public var details: RawJSON?

    public init(sequence: UInt64, timestamp: String, severity: Severity, source: String, message: String, details: RawJSON? = nil) {
        self.sequence = sequence
        self.timestamp = timestamp
        self.severity = severity
        self.source = source
        self.message = message
        self.details = details
    }

    enum CodingKeys: String, CodingKey {
        case sequence, timestamp, severity, source, message, details
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sequence = try container.decode(UInt64.self, forKey: .sequence)
        timestamp = try container.decode(String.self, forKey: .timestamp)
        severity = try container.decode(Severity.self, forKey: .severity)
        source = try container.decode(String.self, forKey: .source)
        message = try container.decode(String.self, forKey: .message)
        let details = try container.decodeIfPresent(RawJSON.self, forKey: .details)
        self.details = (details?.isNull ?? true) ? nil : details
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sequence, forKey: .sequence)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encode(severity, forKey: .severity)
        try container.encode(source, forKey: .source)
        try container.encode(message, forKey: .message)
        try container.encode(details ?? RawJSON.null, forKey: .details)
    }
}

/// Writes alert frames exactly as WIRE.md shows them. Encoded once per
/// publish, whatever the number of subscribers.
public enum AlertFrame {
    /// The bytes every alert frame starts with; the `MonitorAlert` object is
    /// the rest of the frame with `{` in front (used to answer `alerts`
    /// from the retained frames without re-encoding them).
    public static let prefix: [UInt8] = Array(#"{"type":"alert","#.utf8)

    /// `{"type":"alert","sequence":…,"timestamp":"…","severity":…,"source":…,"message":…,"details":…}\n`
    public static func write(
        sequence: UInt64, timestampMilliseconds: Int64, alert: AlertInput, into writer: inout JSONWriter
    ) {
        writer.beginObject()
        writer.key("type")
        writer.string("alert")
        writer.key("sequence")
        writer.uint(sequence)
        writer.key("timestamp")
        writer.timestamp(millisecondsSinceEpoch: timestampMilliseconds)
        writer.key("severity")
        writer.string(alert.severity.rawValue)
        writer.key("source")
        writer.string(alert.source)
        writer.key("message")
        writer.string(alert.message)
        writer.key("details")
        if let details = alert.details {
            writer.raw(details)
        } else {
            writer.null()
        }
        writer.endObject()
        writer.newline()
    }

    /// Writes the `MonitorAlert` object inside an alert frame (the frame
    /// without its tag and newline) as the next value of `writer`.
    public static func writeAlertObject(fromFrame frame: UnsafeRawBufferPointer, into writer: inout JSONWriter) {
        precondition(frame.count > prefix.count + 2 && frame.starts(with: prefix), "not an alert frame")
        // The frame is {"type":"alert",<members>}\n: re-open the object and
        // copy <members> unchanged.
        writer.beginObject()
        writer.bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[prefix.count..<(frame.count - 2)]))
        writer.endObject()
    }
}
