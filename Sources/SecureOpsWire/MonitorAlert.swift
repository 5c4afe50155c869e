import SecureOpsJSON
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
    /// Who published it, from the kernel (extension: `source` is what the
    /// publisher claims, `origin` is who it is). Nil from servers that do
    /// not send it.
    public var origin: AlertOrigin?

    public init(
        sequence: UInt64, timestamp: String, severity: Severity, source: String, message: String, details: RawJSON? = nil,
        origin: AlertOrigin? = nil
    ) {
        self.sequence = sequence
        self.timestamp = timestamp
        self.severity = severity
        self.source = source
        self.message = message
        self.details = details
        self.origin = origin
    }

    enum CodingKeys: String, CodingKey {
        case sequence, timestamp, severity, source, message, details, origin
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
        origin = try container.decodeIfPresent(AlertOrigin.self, forKey: .origin)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sequence, forKey: .sequence)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encode(severity, forKey: .severity)
        try container.encode(source, forKey: .source)
        try container.encode(message, forKey: .message)
        try container.encode(details ?? RawJSON.null, forKey: .details)
        try container.encodeIfPresent(origin, forKey: .origin)
    }
}

/// The publisher of an alert as the kernel identified its connection
/// (`SO_PEERCRED`): `"origin":{"uid":U,"pid":P}`.
public struct AlertOrigin: Sendable, Equatable, Codable {
    public var uid: UInt32
    public var pid: Int32

    public init(uid: UInt32, pid: Int32) {
        self.uid = uid
        self.pid = pid
    }

    /// Writes `{"uid":U,"pid":P}` as the next value.
    func write(into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("uid")
        writer.uint(UInt64(uid))
        writer.key("pid")
        writer.int(Int(pid))
        writer.endObject()
    }
}

/// Writes alert frames exactly as WIRE.md shows them. Encoded once per
/// publish, whatever the number of subscribers.
public enum AlertFrame {
    /// The bytes every alert frame starts with; the `MonitorAlert` object is
    /// the rest of the frame with `{` in front (used to answer `alerts`
    /// from the retained frames without re-encoding them).
    public static let prefix: [UInt8] = Array(#"{"type":"alert","#.utf8)

    /// `{"type":"alert","sequence":…,"timestamp":"…","severity":…,"source":…,"message":…,"details":…,"origin":{…}}\n`
    /// (`origin` only when given: WIRE.md's fields come first, byte for
    /// byte, and the extension after them).
    public static func write(
        sequence: UInt64, timestampMilliseconds: Int64, alert: AlertInput, origin: AlertOrigin? = nil, into writer: inout JSONWriter
    ) {
        write(
            sequence: sequence, timestamp: .milliseconds(timestampMilliseconds), severity: alert.severity,
            source: alert.source, message: alert.message, details: alert.details, origin: origin, into: &writer)
    }

    /// The frame of an alert as a client received it (re-sending it, say).
    public static func write(_ alert: MonitorAlert, into writer: inout JSONWriter) {
        write(
            sequence: alert.sequence, timestamp: .text(alert.timestamp), severity: alert.severity,
            source: alert.source, message: alert.message, details: alert.details, origin: alert.origin, into: &writer)
    }

    private enum Timestamp {
        case milliseconds(Int64)
        case text(String)
    }

    /// The one place an alert frame's members and their order are written.
    @inline(__always)
    private static func write(
        sequence: UInt64, timestamp: Timestamp, severity: Severity, source: String, message: String,
        details: RawJSON?, origin: AlertOrigin?, into writer: inout JSONWriter
    ) {
        writer.beginObject()
        writer.key("type")
        writer.string("alert")
        writer.key("sequence")
        writer.uint(sequence)
        writer.key("timestamp")
        switch timestamp {
        case .milliseconds(let milliseconds): writer.timestamp(millisecondsSinceEpoch: milliseconds)
        case .text(let text): writer.string(text)
        }
        writer.key("severity")
        writer.string(severity.rawValue)
        writer.key("source")
        writer.string(source)
        writer.key("message")
        writer.string(message)
        writer.key("details")
        if let details {
            writer.raw(details)
        } else {
            writer.null()
        }
        if let origin {
            writer.key("origin")
            origin.write(into: &writer)
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
