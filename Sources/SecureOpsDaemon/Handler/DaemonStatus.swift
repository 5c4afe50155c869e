import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsForwarder

/// `status` as the daemon answers it: the engine's `MonitorStatus` plus
/// the audit log's health (additive fields, WIRE.md allows them).
struct DaemonStatus: Encodable {
    var base: MonitorStatus
    var auditLog: AuditLog.Health

    init(_ base: MonitorStatus, auditLog: AuditLog.Health) {
        self.base = base
        self.auditLog = auditLog
    }

    enum CodingKeys: String, CodingKey {
        case auditLogHealthy, auditLogError, auditLogRecords, auditLogLost
    }

    func encode(to encoder: any Encoder) throws {
        try base.encode(to: encoder)
        // Asking the same encoder for a keyed container again continues
        // the same object.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(auditLog.healthy, forKey: .auditLogHealthy)
        try c.encodeIfPresent(auditLog.lastError, forKey: .auditLogError)
        try c.encode(auditLog.records, forKey: .auditLogRecords)
        try c.encode(auditLog.lost, forKey: .auditLogLost)
    }
}

extension JournalReport {
    /// `detailed` for operators: the error text may name paths.
    init(_ status: JournalStatus, detailed: Bool) {
        var lastError: String?
        if case .failing(let why) = status.health { lastError = detailed ? why : "writes are failing (details for operators)" }
        self.init(
            healthy: status.health == .healthy, sync: status.syncPolicy.rawValue, writer: status.writer.rawValue, persistedThrough: status.through,
            firstSequence: status.storage.firstSequence, segments: status.storage.segments, bytes: status.storage.bytes,
            failedAlerts: status.failedRecords, lastError: lastError)
    }
}

extension ForwarderReport {
    init(_ status: ForwarderStatus, detailed: Bool) {
        self.init(
            state: status.state.rawValue, server: status.server.map(Self.withoutCredentials),
            acknowledgedSequence: status.acknowledgedSequence, unforwarded: status.unforwarded,
            droppedBeforeForwarding: status.droppedBeforeForwarding,
            lastError: status.lastError.map { detailed ? $0 : "forwarding failed (details for operators)" })
    }

    /// `nats://user:secret@host:4222` → `nats://host:4222`.
    static func withoutCredentials(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].firstIndex(of: "@") else { return url }
        return String(url[..<scheme.upperBound]) + String(url[url.index(after: at)...])
    }
}
