import Glibc
import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsSystem

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
    public static func run(stateDirectory path: String, report: @escaping @Sendable (String) -> Void) throws(Failure) -> Outcome {
        let owner = geteuid()
        let directory: OpenedDirectory
        do {
            directory = try TrustedPath.openDirectory(path, trust: .rootAnd(owner))
        } catch {
            if error.code == ENOENT {
                throw Failure(description: "no state directory at \(path): nothing to reset (pass the daemon's --state-dir)", exitCode: 2)
            }
            throw Failure(description: "cannot reset the kill switch: state directory \(error)", exitCode: 2)
        }
        guard directory.status.owner == owner else {
            throw Failure(description: "cannot reset the kill switch: \(path) is owned by uid \(directory.status.owner); run reset-kill as the daemon's user", exitCode: 2)
        }
        let log: AuditLog
        do {
            log = try AuditLog.open(directory: directory, owner: owner, report: report)
        } catch {
            throw Failure(description: "cannot reset the kill switch: \(error)", exitCode: 2)
        }
        let by: JSONObject = ["byUid": .number(JSONNumber(Int(getuid()))), "byPid": .number(JSONNumber(Int(getpid())))]
        let previous: KillSwitch.State?
        do {
            previous = try KillSwitch.reset(directory: directory, owner: owner)
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
