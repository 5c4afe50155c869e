/// One alert as the forwarder reads it from the journal.
public struct ForwardedAlert: Sendable, Equatable {
    public var sequence: UInt64
    public var severity: String
    /// The alert frame as subscribers receive it, without the trailing
    /// newline: the body of the NATS message.
    public var frame: [UInt8]

    public init(sequence: UInt64, severity: String, frame: [UInt8]) {
        self.sequence = sequence
        self.severity = severity
        self.frame = frame
    }
}

/// Where the forwarder reads alerts from (the journal). Called on the
/// forwarder's thread only.
public protocol ForwardingSource: AnyObject, Sendable {
    /// Records with sequence >= `from`, in order, at most `maxCount`; empty
    /// when there are none yet. The first returned may be later than
    /// `from` when retention dropped older ones.
    func records(from: UInt64, maxCount: Int) throws -> [ForwardedAlert]
}

/// Alerts the source no longer had when the forwarder reached them:
/// retention dropped them before they were forwarded.
public struct ForwardingGap: Sendable, Equatable {
    /// The first and last sequence missing.
    public var first: UInt64
    public var last: UInt64
    public var count: UInt64 { last - first + 1 }

    public init(first: UInt64, last: UInt64) {
        precondition(first <= last, "a gap of at least one alert")
        self.first = first
        self.last = last
    }
}
