import Glibc
import SecureOpsSystem

/// Why a file in the state directory is not trusted.
public struct StateFileProblem: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var reason: String
    /// The errno when it could not be opened (ENOENT: it does not exist).
    public var code: Int32?

    public var description: String { "\(path) \(reason)" }
}

/// Opens the files of a state directory (the audit log, its key and head,
/// the kill switch): through the directory's descriptor, never following a
/// symbolic link, and only a regular file of the daemon's user that nobody
/// else may write. Someone else's file there, or one others could change,
/// is a sign of tampering: it is refused, with what to check.
public enum StateFile {
    public static func open(
        _ name: String, in directory: OpenedDirectory, flags: Int32, owner: UInt32?, mode: mode_t = 0o600
    ) throws(StateFileProblem) -> (FileDescriptor, FileStatus) {
        let path = directory.pathOf(name)
        let file: FileDescriptor
        do {
            file = try directory.openFile(name, flags: flags, mode: mode)
        } catch {
            if error.code == ELOOP {
                throw StateFileProblem(path: path, reason: "is a symbolic link; refusing to use it (someone replaced the file: inspect it)", code: error.code)
            }
            throw StateFileProblem(path: path, reason: "cannot be opened: \(String(cString: strerror(error.code)))", code: error.code)
        }
        let status: FileStatus
        do {
            status = try file.status(path: path)
        } catch {
            throw StateFileProblem(path: path, reason: "cannot be examined: \(String(cString: strerror(error.code)))", code: error.code)
        }
        guard status.kind == .regularFile else {
            throw StateFileProblem(path: path, reason: "is \(status.kind), not a regular file; refusing to use it")
        }
        if let owner, status.owner != owner {
            throw StateFileProblem(
                path: path,
                reason: "is owned by uid \(status.owner), not the daemon's uid \(owner): someone else made or replaced it; inspect it, then 'chown \(owner) \(path)' if it is genuine")
        }
        if status.isWritableByGroupOrOthers {
            throw StateFileProblem(
                path: path,
                reason: "is writable by group or others (mode \(status.octal)): it may have been changed; inspect it, then 'chmod 0600 \(path)'")
        }
        return (file, status)
    }
}
