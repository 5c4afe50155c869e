/// Alerts as the forwarder reads them from the journal: their frames end
/// to end in one buffer (two allocations a batch, not one an alert).
public struct ForwardedBatch: Sendable, Equatable {
    public struct Alert: Sendable, Equatable {
        public var sequence: UInt64
        /// The subject's last token.
        public var severity: String
        /// Where in `bytes` the alert frame is, as subscribers receive it
        /// without the trailing newline: the body of the NATS message.
        public var frame: Range<Int>
    }

    public private(set) var bytes: [UInt8] = []
    public private(set) var alerts: [Alert] = []

    public init() {}

    public mutating func append(sequence: UInt64, severity: String, frame: UnsafeRawBufferPointer) {
        assert(alerts.last.map { sequence > $0.sequence } ?? true, "a batch is in sequence order")
        let start = bytes.count
        bytes.append(contentsOf: frame)
        alerts.append(Alert(sequence: sequence, severity: severity, frame: start..<bytes.count))
    }

    public func frame(of alert: Alert) -> ArraySlice<UInt8> { bytes[alert.frame] }
}

/// Where the forwarder reads alerts from (the journal). Called on the
/// forwarder's thread only.
public protocol ForwardingSource: AnyObject, Sendable {
    /// Alerts with sequence >= `from`, in order, at most `maxCount`; empty
    /// when there are none yet. The first may be later than `from` when
    /// retention dropped older ones.
    func alerts(from: UInt64, maxCount: Int) throws -> ForwardedBatch
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
