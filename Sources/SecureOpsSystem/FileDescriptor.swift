import CSecureOpsSystem
import Glibc
import Synchronization

/// open(2) flags Glibc does not import.
public enum SystemFlags {
    /// `O_PATH`: a descriptor that names a file (to `fstat`, to execute
    /// through /proc/self/fd, to walk from) without opening it for I/O.
    public static let pathOnly: Int32 = CS_O_PATH
}

/// A failed system call, with what it was doing and on which path.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var path: String
    public var code: Int32

    public init(_ operation: String, _ path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// An owned file descriptor: closed exactly once, by `close()` or when the
/// last reference goes away.
public final class FileDescriptor: Sendable {
    public let raw: Int32
    private let isClosed = Atomic<Bool>(false)

    /// Takes ownership of `raw`.
    public init(adopting raw: Int32) {
        precondition(raw >= 0, "adopting an invalid descriptor")
        self.raw = raw
    }

    deinit {
        close()
    }

    public func close() {
        if !isClosed.exchange(true, ordering: .acquiringAndReleasing) {
            Glibc.close(raw)
        }
    }

    /// `fstat` of the descriptor (works on `O_PATH` descriptors too).
    public func status(path: String) throws(SystemError) -> FileStatus {
        var info = stat()
        guard fstat(raw, &info) == 0 else { throw SystemError("fstat", path) }
        return FileStatus(info)
    }

    /// Changes the mode of the file this descriptor names. `fchmod` on a
    /// descriptor opened for I/O; through `/proc/self/fd` for an `O_PATH`
    /// descriptor (which `fchmod` refuses) or a socket file (whose `fchmod`
    /// would change the socket, not the file): either way the inode that
    /// was checked, never a path looked up again.
    public func setMode(_ mode: mode_t, path: String) throws(SystemError) {
        if fchmod(raw, mode) == 0 { return }
        guard errno == EBADF else { throw SystemError("fchmod", path) }
        guard chmod("/proc/self/fd/\(raw)", mode) == 0 else { throw SystemError("chmod (by descriptor)", path) }
    }

    /// Writes all of `bytes`; returns nil or the errno that stopped it.
    public func writeAll(_ bytes: [UInt8]) -> Int32? {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(raw, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return errno }
            if n == 0 { return EIO }
            written += n
        }
        return nil
    }

    /// Reads `count` bytes at `offset` (fewer at the end of the file), or
    /// nil with `errno` set.
    public func read(at offset: Int, count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = buffer.withUnsafeMutableBytes { pread(raw, $0.baseAddress! + filled, count - filled, off_t(offset + filled)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return nil }
            if n == 0 { break }
            filled += n
        }
        buffer.removeSubrange(filled...)
        return buffer
    }

    /// The start of a small file by path (a /proc or /sys entry), at most
    /// `limit` bytes, without following a symbolic link; nil if unreadable.
    public static func readSmallFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        let file = FileDescriptor(adopting: fd)
        var bytes: [UInt8] = []
        while bytes.count < limit {
            var chunk = [UInt8](repeating: 0, count: min(16 << 10, limit - bytes.count))
            let n = chunk.withUnsafeMutableBytes { Glibc.read(file.raw, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// `fsync`; nil or the errno.
    public func sync() -> Int32? {
        fsync(raw) == 0 ? nil : errno
    }
}

/// What `fstat` says about a file, in the terms the checks use.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        case directory, regularFile, symbolicLink, socket, other

        public var description: String {
            switch self {
            case .directory: "a directory"
            case .regularFile: "a regular file"
            case .symbolicLink: "a symbolic link"
            case .socket: "a socket"
            case .other: "a special file"
            }
        }
    }

    public var kind: Kind
    /// Permission bits, including setuid, setgid and sticky (mode & 07777).
    public var permissions: mode_t
    public var owner: UInt32
    public var group: UInt32
    public var device: UInt64
    public var inode: UInt64
    public var size: Int

    public init(_ info: stat) {
        switch info.st_mode & S_IFMT {
        case S_IFDIR: kind = .directory
        case S_IFREG: kind = .regularFile
        case S_IFLNK: kind = .symbolicLink
        case S_IFSOCK: kind = .socket
        default: kind = .other
        }
        permissions = info.st_mode & 0o7777
        owner = info.st_uid
        group = info.st_gid
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int(info.st_size)
    }

    public var isWritableByGroupOrOthers: Bool { permissions & 0o022 != 0 }
    public var isReadableByGroupOrOthers: Bool { permissions & 0o044 != 0 }
    public var isSticky: Bool { permissions & S_ISVTX != 0 }
    /// `0755`-style text for messages.
    public var octal: String { "0" + String(permissions, radix: 8) }

    /// Whether this is the same file as `other` (device and inode).
    public func isSameFile(as other: FileStatus) -> Bool {
        device == other.device && inode == other.inode
    }
}
