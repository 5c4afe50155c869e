/// Typed calls, one per request type of WIRE.md (the same calls as the
/// async client's, from the same `TypedCall` table). Each waits at most
/// `timeout` (nil: ``requestTimeout``) and throws `IpcError.server` with the
/// daemon's message when it answers `err`.
extension SecureOpsConnection {
    public func ping(timeout: RequestTimeout? = nil) throws(IpcError) {
        try perform(TypedCall.ping, timeout: timeout)
    }

    public func status(timeout: RequestTimeout? = nil) throws(IpcError) -> MonitorStatus {
        try perform(TypedCall.status, timeout: timeout)
    }

    /// Publishes one alert; returns its sequence.
    public func publish(_ alert: AlertInput, timeout: RequestTimeout? = nil) throws(IpcError) -> UInt64 {
        try perform(TypedCall.publish(alert), timeout: timeout)
    }

    /// Subscribes this connection; returns the sequence of the next live
    /// alert. Read alerts with `nextPush`.
    public func subscribe(since: UInt64? = nil, timeout: RequestTimeout? = nil) throws(IpcError) -> UInt64 {
        try perform(TypedCall.subscribe(since: since), timeout: timeout)
    }

    /// The most recent retained alerts, oldest first (at most `limit`,
    /// default 100).
    public func alerts(limit: Int? = nil, timeout: RequestTimeout? = nil) throws(IpcError) -> [MonitorAlert] {
        try perform(TypedCall.alerts(limit: limit), timeout: timeout)
    }

    /// Trips the kill switch; returns the sequence of the kill alert.
    public func kill(reason: String?, timeout: RequestTimeout? = nil) throws(IpcError) -> UInt64 {
        try perform(TypedCall.kill(reason: reason), timeout: timeout)
    }

    public func audit(_ options: AuditOptions = AuditOptions(), timeout: RequestTimeout? = nil) throws(IpcError) -> AuditReport {
        try perform(TypedCall.audit(options), timeout: timeout)
    }

    /// Reloads the policy; returns the version in force.
    public func reloadPolicy(timeout: RequestTimeout? = nil) throws(IpcError) -> Int {
        try perform(TypedCall.reloadPolicy, timeout: timeout)
    }
}

/// One-shot helpers: connect, ask, close.
public enum SecureOps {
    public static func connect(path: String = WireDefaults.socketPath(), trust: ServerTrust = .fromEnvironment) throws(IpcError) -> SecureOpsConnection {
        try SecureOpsConnection.connect(to: path, trust: trust)
    }

    public static func request(
        _ request: IpcRequest, path: String = WireDefaults.socketPath(), trust: ServerTrust = .fromEnvironment, timeout: Double? = 30
    ) throws(IpcError) -> IpcResponse {
        let connection = try SecureOpsConnection.connect(to: path, trust: trust)
        defer { connection.close() }
        return try connection.request(request, timeout: timeout)
    }
}
