import SecureOpsSystem

/// Typed calls, one per request type of WIRE.md. Each throws
/// `IpcError.server` with the daemon's message when it answers `err`.
extension SecureOpsConnection {
    public func ping() throws(IpcError) {
        _ = try expectOk(.ping)
    }

    public func status() throws(IpcError) -> MonitorStatus {
        try decodeOk(MonitorStatus.self, from: .status)
    }

    /// Publishes one alert; returns its sequence.
    public func publish(_ alert: AlertInput) throws(IpcError) -> UInt64 {
        try decodeOk(PublishResult.self, from: .publish(alert)).sequence
    }

    /// Subscribes this connection; returns the sequence of the next live
    /// alert. Read alerts with `nextPush`.
    public func subscribe(since: UInt64? = nil) throws(IpcError) -> UInt64 {
        try decodeOk(SubscribeResult.self, from: .subscribe(since: since)).next
    }

    public func alerts(limit: Int? = nil) throws(IpcError) -> [MonitorAlert] {
        try decodeOk(AlertsResult.self, from: .alerts(limit: limit)).alerts
    }

    /// Trips the kill switch; returns the sequence of the kill alert.
    public func kill(reason: String?) throws(IpcError) -> UInt64 {
        try decodeOk(KillResult.self, from: .kill(reason: reason)).sequence
    }

    public func audit(_ options: AuditOptions = AuditOptions()) throws(IpcError) -> AuditReport {
        try decodeOk(AuditReport.self, from: .audit(options))
    }

    /// Reloads the policy; returns the version in force.
    public func reloadPolicy() throws(IpcError) -> Int {
        try decodeOk(ReloadResult.self, from: .reloadPolicy).policyVersion
    }

    private func expectOk(_ request: IpcRequest) throws(IpcError) -> JSONObject {
        switch try self.request(request) {
        case .ok(let payload): return payload
        case .err(let message, _, _):
            if message.hasPrefix("not authorized") { throw .unauthorized(message) }
            throw .server(message)
        case .alert: throw .codec("an alert arrived where a reply was expected")
        }
    }

    private func decodeOk<T: Decodable>(_ type: T.Type, from request: IpcRequest) throws(IpcError) -> T {
        let payload = try expectOk(request)
        do {
            return try FastJSONDecoder().decode(T.self, from: RawJSON(.object(payload)).bytes)
        } catch {
            throw .codec("unexpected reply to \(request.verb.rawValue): \(error)")
        }
    }
}

public struct PublishResult: Decodable, Sendable { public var sequence: UInt64 }
public struct SubscribeResult: Decodable, Sendable { public var subscribed: Bool; public var next: UInt64 }
public struct AlertsResult: Decodable, Sendable { public var alerts: [MonitorAlert] }
public struct KillResult: Decodable, Sendable { public var killed: Bool; public var sequence: UInt64 }
public struct ReloadResult: Decodable, Sendable { public var policyVersion: Int }

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
