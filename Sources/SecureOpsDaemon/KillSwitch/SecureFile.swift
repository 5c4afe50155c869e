import Glibc
import SecureOpsAuditLog

/// File operations for the state directory, written against symlink and
/// partial-write attacks: no following of symlinks, private modes, and
/// replace-by-rename with fsync so a crash leaves the old or the new file,
/// never a torn one.
public enum SecureFile {
    public struct Failure: Error, CustomStringConvertible {
        public var operation: String
        public var path: String
        public var code: Int32
        public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
    }

    /// Creates `path` (and missing parents) as a directory with `mode`, or
    /// checks that it is a real directory (not a symlink) owned by us.
    public static func ensureDirectory(_ path: String, mode: mode_t) throws(Failure) {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw Failure(operation: "state directory is not a directory (or is a symlink):", path: path, code: ENOTDIR)
            }
            return
        }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try ensureDirectory(String(path[..<slash]), mode: 0o755)
        }
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw Failure(operation: "mkdir", path: path, code: errno)
        }
        _ = chmod(path, mode)
    }

    /// Replaces `path` with `bytes` atomically and durably (the audit
    /// log's own primitive: temporary file, fsync, rename, directory fsync).
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(Failure) {
        do {
            try LogFileIO.replaceAtomically(path, with: bytes, mode: mode)
        } catch {
            throw Failure(operation: error.operation, path: error.path, code: error.code)
        }
    }

    /// Reads a whole small file without following a symlink; nil if absent.
    public static func read(_ path: String, limit: Int = 1 << 20) throws(Failure) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw Failure(operation: "open", path: path, code: errno)
        }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while result.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(operation: "read", path: path, code: errno) }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }
}
