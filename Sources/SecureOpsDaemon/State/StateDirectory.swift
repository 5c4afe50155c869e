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

    /// `name` inside the state directory (the journal's), created 0700 if
    /// missing; like the state directory, it must be the daemon user's own
    /// and not writable by group or others. Checked on the descriptor it
    /// was opened by, never by path.
    public static func openSubdirectory(_ name: String, in parent: OpenedDirectory, owner: UInt32) throws(Failure) -> OpenedDirectory {
        let path = parent.pathOf(name)
        if mkdirat(parent.descriptor.raw, name, 0o700) != 0 && errno != EEXIST {
            throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        let fd = openat(parent.descriptor.raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "cannot open \(path): \(String(cString: strerror(errno))) (a symbolic link or not a directory?)") }
        let descriptor = FileDescriptor(adopting: fd)
        let status: FileStatus
        do { status = try descriptor.status(path: path) } catch { throw Failure(description: "\(error)") }
        guard status.owner == owner else {
            throw Failure(description: "\(path) is owned by uid \(status.owner), not the daemon's uid \(owner)")
        }
        guard !status.isWritableByGroupOrOthers else {
            throw Failure(description: "\(path) has mode 0\(String(status.permissions, radix: 8)): group or others could delete or rewrite alerts; 'chmod 0700 \(path)'")
        }
        if status.permissions != 0o700 {
            do { try descriptor.setMode(0o700, path: path) } catch { throw Failure(description: "\(error)") }
        }
        return OpenedDirectory(descriptor: descriptor, path: path, status: status)
    }
}
