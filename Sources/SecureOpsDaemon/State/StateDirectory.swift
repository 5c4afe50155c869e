import Glibc
import SecureOpsSystem

/// The daemon's state directory (kill switch, audit log, key, head): opened
/// once at start through `TrustedPath` and used by descriptor from then on.
///
/// Missing directories are created through the umask and checked on the
/// descriptor they were opened by; nothing is ever `chmod`ed by path. An
/// existing directory must be the daemon user's own, not writable by group
/// or others, and reached only through directories of root or that user:
/// anyone else could delete the kill switch, the log and its key.
public enum StateDirectory {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// What `open` did besides opening, for the caller's log.
    public struct Opened {
        public var directory: OpenedDirectory
        /// The mode it had, when it was tightened to 0700.
        public var tightenedFrom: mode_t?
    }

    public static func open(_ path: String, owner: UInt32) throws(Failure) -> Opened {
        let directory: OpenedDirectory
        do {
            directory = try TrustedPath.openDirectory(
                path, trust: .rootAnd(owner), creating: TrustedPath.Creation(intermediateMode: 0o755, finalMode: 0o700))
        } catch {
            throw Failure(description: "state directory \(error)")
        }
        guard directory.status.owner == owner else {
            throw Failure(description: "state directory \(path) is owned by uid \(directory.status.owner), not the daemon's uid \(owner); 'chown \(owner) \(path)' if it is meant for this daemon")
        }
        var tightenedFrom: mode_t?
        if directory.status.permissions != 0o700 {
            // Not writable by others (TrustedPath checked); readable by them,
            // or created through a umask: tighten it on the descriptor.
            do {
                try directory.descriptor.setMode(0o700, path: path)
            } catch {
                throw Failure(description: "state directory \(path): \(error)")
            }
            tightenedFrom = directory.status.permissions
        }
        return Opened(directory: directory, tightenedFrom: tightenedFrom)
    }
}
