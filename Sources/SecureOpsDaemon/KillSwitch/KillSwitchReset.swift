import Glibc
import SecureOpsAuditLog
import SecureOpsEngine

/// `secureopsd reset-kill`: clears a tripped kill switch while the daemon
/// is stopped, and records who did it in the audit log.
public enum KillSwitchReset {
    public struct Outcome: Sendable {
        /// The state that was cleared (nil, or not killed: nothing was tripped).
        public var previous: KillSwitch.State?
        /// Whether the `kill-reset` record reached the disk.
        public var recorded: Bool
        public var logPath: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// 2: refused before changing anything; 1: failed while resetting.
        public var exitCode: Int32
    }

    /// Opens the audit log first: it holds the lock that proves no daemon
    /// uses this state directory, and a reset that cannot be recorded is
    /// not made.
    public static func run(stateDirectory directory: String, report: @escaping @Sendable (String) -> Void) throws(Failure) -> Outcome {
        var info = stat()
        guard lstat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw Failure(description: "no state directory at \(directory): nothing to reset (pass the daemon's --state-dir)", exitCode: 2)
        }
        let log: AuditLog
        do {
            log = try AuditLog.open(directory: directory, report: report)
        } catch {
            throw Failure(description: "cannot reset the kill switch: \(error)", exitCode: 2)
        }
        let by: JSONObject = ["byUid": .number(JSONNumber(Int(getuid()))), "byPid": .number(JSONNumber(Int(getpid())))]
        let previous: KillSwitch.State?
        do {
            previous = try KillSwitch.reset(stateDirectory: directory)
        } catch {
            log.close(finalEvent: "kill-reset-failed", fields: by + ["error": .string("\(error)")])
            throw Failure(description: "cannot reset the kill switch: \(error)", exitCode: 1)
        }
        let recorded = log.close(finalEvent: "kill-reset", fields: [
            "wasTripped": .bool(previous?.killed ?? false),
            "previousReason": previous?.reason.map { .string($0) } ?? .null,
            "previousTrippedAt": previous?.trippedAt.map { .string($0) } ?? .null,
            "previousUid": previous?.uid.map { .number(JSONNumber(Int($0))) } ?? .null,
        ] + by)
        return Outcome(previous: previous, recorded: recorded, logPath: log.logPath)
    }
}
