import Glibc
import SecureOpsSystem

/// The program a policy's `onKill` names, opened and checked the way the
/// daemon trusts a file: every component from `/` owned by root or the
/// daemon's user, none writable by anyone else (sticky directories
/// excepted), no symbolic links. Checked when the policy is loaded and
/// again right before each run, on the descriptor that is then executed:
/// a program someone else could have swapped is never run.
public enum OnKillProgram {
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The opened program and what it is.
    public struct Checked: Sendable {
        public var descriptor: FileDescriptor
        public var status: FileStatus
    }

    public static func open(_ path: String, daemonUID: UInt32) throws(Problem) -> Checked {
        let opened: (descriptor: FileDescriptor, status: FileStatus)
        do {
            opened = try TrustedPath.open(path, trust: .rootAnd(daemonUID), flags: SystemFlags.pathOnly)
        } catch {
            throw Problem(description: "\(error)")
        }
        guard opened.status.kind == .regularFile else {
            throw Problem(description: "\(path) is \(opened.status.kind), not a regular file")
        }
        guard opened.status.permissions & 0o111 != 0 else {
            throw Problem(description: "\(path) is not executable (mode \(opened.status.octal)); kill would not stop anything")
        }
        return Checked(descriptor: opened.descriptor, status: opened.status)
    }
}
