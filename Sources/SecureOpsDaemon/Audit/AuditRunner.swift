import Glibc
import SecureOpsEngine

/// Runs the audit checks on the Dispatch pool. A check that throws becomes
/// `error`; the run never aborts.
struct AuditRunner {
    let services: DaemonServices
    let options: AuditOptions

    func run() -> AuditReport {
        let started = DaemonServices.realtimeMilliseconds()
        let startedClock = DaemonServices.monotonicNanoseconds()
        var results: [AuditCheckResult] = []
        let environment = AuditEnvironment(services: services, fix: options.fix, deep: options.deep)
        for check in AuditChecks.all where options.deep || !check.deepOnly {
            do {
                let outcome = try check.run(environment)
                results.append(AuditCheckResult(
                    id: check.id, title: check.title, status: outcome.status, severity: check.severity,
                    detail: outcome.detail, fixed: outcome.fixed))
            } catch {
                results.append(AuditCheckResult(
                    id: check.id, title: check.title, status: .error, severity: check.severity,
                    detail: "check failed to run: \(error)"))
            }
        }
        var writer = JSONWriter(capacity: 32)
        writer.timestamp(millisecondsSinceEpoch: started)
        let startedAt = String(decoding: writer.bytes.dropFirst().dropLast(), as: UTF8.self)
        let durationMs = Int((DaemonServices.monotonicNanoseconds() - startedClock) / 1_000_000)
        let report = AuditReport(startedAt: startedAt, durationMs: durationMs, deep: options.deep, fix: options.fix, checks: results)
        services.logger.info("audit run", metadata: [
            "fixed": "\(results.filter(\.fixed).map(\.id))",
            "pass": "\(report.summary.pass)", "warn": "\(report.summary.warn)",
            "fail": "\(report.summary.fail)", "error": "\(report.summary.error)",
            "deep": "\(options.deep)", "fix": "\(options.fix)",
        ])
        return report
    }
}

/// What a check may look at.
struct AuditEnvironment {
    let services: DaemonServices
    let fix: Bool
    let deep: Bool
    var options: DaemonOptions { services.options }
}

struct AuditOutcome {
    var status: AuditCheckResult.Status
    var detail: String
    var fixed = false

    static func pass(_ detail: String) -> AuditOutcome { AuditOutcome(status: .pass, detail: detail) }
    static func warn(_ detail: String) -> AuditOutcome { AuditOutcome(status: .warn, detail: detail) }
    static func fail(_ detail: String) -> AuditOutcome { AuditOutcome(status: .fail, detail: detail) }
    static func skipped(_ detail: String) -> AuditOutcome { AuditOutcome(status: .skipped, detail: detail) }
}

struct AuditCheck: Sendable {
    let id: String
    let title: String
    let severity: Severity
    /// Only with `deep`: expensive checks.
    let deepOnly: Bool
    let run: @Sendable (AuditEnvironment) throws -> AuditOutcome
}

struct AuditError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// File metadata for checks, without following symlinks.
struct FileFacts {
    var mode: mode_t
    var uid: uid_t
    var gid: gid_t
    var isSymlink: Bool
    var isRegular: Bool

    init?(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        mode = info.st_mode & 0o7777
        uid = info.st_uid
        gid = info.st_gid
        isSymlink = (info.st_mode & S_IFMT) == S_IFLNK
        isRegular = (info.st_mode & S_IFMT) == S_IFREG
    }

    var octal: String { "0" + String(mode, radix: 8) }
}

func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}
