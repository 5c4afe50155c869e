import Glibc
import SecureOpsEngine
import SecureOpsSystem

/// Runs the audit checks on the Dispatch pool. A check that throws becomes
/// `error`; the run never aborts.
struct AuditRunner {
    let services: DaemonServices
    let options: AuditOptions

    func run() -> AuditReport {
        let started = SystemClock.realtimeMilliseconds()
        let startedClock = SystemClock.monotonicNanoseconds()
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
        let durationMs = Int((SystemClock.monotonicNanoseconds() - startedClock) / 1_000_000)
        let report = AuditReport(startedAt: startedAt, durationMs: durationMs, deep: options.deep, fix: options.fix, checks: results)
        return report
    }
}

/// What a check may look at.
struct AuditEnvironment {
    let services: DaemonServices
    let fix: Bool
    let deep: Bool
    var options: DaemonOptions { services.options }
    var daemonUID: UInt32 { services.daemonUID }
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

/// A file or directory an audit check looks at and may repair: its parent
/// is opened through `TrustedPath` first, then the entry itself with
/// `O_PATH | O_NOFOLLOW`, so a fix changes the very inode that was
/// checked, never a path looked up again (which a symbolic link swapped in
/// meanwhile could redirect).
struct AuditedPath {
    let path: String
    let descriptor: FileDescriptor
    let status: FileStatus

    static func open(_ path: String, daemonUID: UInt32) throws -> AuditedPath {
        let parent: FileDescriptor
        do {
            parent = try TrustedPath.open(
                parentDirectory(of: path), trust: .rootAnd(daemonUID), flags: SystemFlags.pathOnly | O_DIRECTORY, final: .traversable
            ).descriptor
        } catch {
            throw AuditError("\(path): \(error)")
        }
        let name = String(path[path.index(after: path.lastIndex(of: "/") ?? path.startIndex)...])
        let fd = openat(parent.raw, name.isEmpty ? "." : name, SystemFlags.pathOnly | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw AuditError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        let descriptor = FileDescriptor(adopting: fd)
        return AuditedPath(path: path, descriptor: descriptor, status: try descriptor.status(path: path))
    }

    /// Sets the mode on the descriptor; false if that failed.
    func setMode(_ mode: mode_t) -> Bool {
        (try? descriptor.setMode(mode, path: path)) != nil
    }
}

func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}
