import Glibc

/// A failed system call on one of the log's files, with the path.
public struct AuditLogIOError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var path: String
    public var code: Int32

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// The few POSIX file operations the log needs, never following symlinks.
/// File primitives shared by the audit log and the daemon's other state
/// files (package access: not part of any product's API).
package enum LogFileIO {
    static func errorString(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return errno }
            if n == 0 { return EIO }
            written += n
        }
        return nil
    }

    /// Reads `count` bytes at `offset` (fewer at end of file).
    static func pread(_ fd: Int32, offset: Int, count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = buffer.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress! + filled, count - filled, off_t(offset + filled)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            filled += n
        }
        buffer.removeSubrange(filled...)
        return buffer
    }

    /// A whole small file, or nil if it does not exist.
    static func readSmallFile(_ path: String, limit: Int) throws(AuditLogIOError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw AuditLogIOError(operation: "open", path: path, code: errno)
        }
        defer { close(fd) }
        guard let bytes = pread(fd, offset: 0, count: limit) else {
            throw AuditLogIOError(operation: "read", path: path, code: errno)
        }
        return bytes
    }

    /// Replaces `path` atomically and durably (temporary file, fsync,
    /// rename, fsync of the directory), with `mode`.
    package static func replaceAtomically(_ path: String, with bytes: [UInt8], mode: mode_t = 0o600) throws(AuditLogIOError) {
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw AuditLogIOError(operation: "create", path: temporary, code: errno) }
        var failure: AuditLogIOError?
        if let code = writeAll(fd, bytes) { failure = AuditLogIOError(operation: "write", path: temporary, code: code) }
        if failure == nil && fsync(fd) != 0 { failure = AuditLogIOError(operation: "fsync", path: temporary, code: errno) }
        close(fd)
        if let failure {
            unlink(temporary)
            throw failure
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw AuditLogIOError(operation: "rename", path: path, code: code)
        }
        syncDirectory(of: path)
    }

    package static func syncDirectory(of path: String) {
        let fd = open(directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }
}

/// Reads a file line by line in 64 KiB chunks, so verifying a large log
/// needs memory for one line, not for the file.
struct LineReader {
    enum Item {
        /// A line without its newline.
        case line([UInt8])
        /// Bytes at the end of the file with no newline after them.
        case unterminated([UInt8])
        /// A line longer than the limit (its first bytes are dropped).
        case tooLong
    }

    private let fd: Int32
    private let limit: Int
    private let maxLineBytes: Int
    private var offset = 0
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    /// Reads at most `limit` bytes of `fd` from the start.
    init(fd: Int32, limit: Int, maxLineBytes: Int) {
        self.fd = fd
        self.limit = limit
        self.maxLineBytes = maxLineBytes
    }

    mutating func next() throws(AuditLogIOError) -> Item? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                if line.count > maxLineBytes { return .tooLong }
                return .line(line)
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let rest = Array(buffer[start...])
                start = buffer.count
                return .unterminated(rest)
            }
            if buffer.count - start > maxLineBytes {
                // Skip to the next newline without keeping the line.
                try skipPastNewline()
                return .tooLong
            }
            try fill()
        }
    }

    private mutating func fill() throws(AuditLogIOError) {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        let want = min(64 << 10, limit - offset)
        guard want > 0 else {
            atEnd = true
            return
        }
        guard let chunk = LogFileIO.pread(fd, offset: offset, count: want) else {
            throw AuditLogIOError(operation: "read", path: "audit log", code: errno)
        }
        if chunk.isEmpty { atEnd = true }
        offset += chunk.count
        buffer.append(contentsOf: chunk)
    }

    private mutating func skipPastNewline() throws(AuditLogIOError) {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                start = newline + 1
                return
            }
            buffer.removeAll(keepingCapacity: true)
            start = 0
            if atEnd { return }
            try fill()
        }
    }
}
