import SecureOpsJSON
/// The answer to `audit` (WIRE.md, "Types").
public struct AuditReport: Sendable, Equatable, Codable {
    public var startedAt: String
    public var durationMs: Int
    public var deep: Bool
    public var fix: Bool
    public var checks: [AuditCheckResult]
    public var summary: AuditSummary

    public init(startedAt: String, durationMs: Int, deep: Bool, fix: Bool, checks: [AuditCheckResult]) {
        self.startedAt = startedAt
        self.durationMs = durationMs
        self.deep = deep
        self.fix = fix
        self.checks = checks
        summary = AuditSummary(checks)
    }
}

public struct AuditCheckResult: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case pass, warn, fail, error, skipped
    }

    public var id: String
    public var title: String
    public var status: Status
    public var severity: Severity
    public var detail: String
    public var fixed: Bool

    public init(id: String, title: String, status: Status, severity: Severity, detail: String, fixed: Bool = false) {
        self.id = id
        self.title = title
        self.status = status
        self.severity = severity
        self.detail = detail
        self.fixed = fixed
    }
}

public struct AuditSummary: Sendable, Equatable, Codable {
    public var pass = 0
    public var warn = 0
    public var fail = 0
    public var error = 0
    public var skipped = 0

    public init(_ checks: [AuditCheckResult]) {
        for check in checks {
            switch check.status {
            case .pass: pass += 1
            case .warn: warn += 1
            case .fail: fail += 1
            case .error: error += 1
            case .skipped: skipped += 1
            }
        }
    }
}
