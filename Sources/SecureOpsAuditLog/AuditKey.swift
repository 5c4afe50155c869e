import Crypto
import Glibc

/// The HMAC key in `audit.key`: 32 random bytes, mode 0600, created once
/// with `O_EXCL` so two processes can never each make their own.
public enum AuditKey {
    public enum Failure: Error, CustomStringConvertible, Sendable {
        case missing(path: String)
        case io(AuditLogIOError)
        case notAFile(path: String)
        case wrongOwner(path: String, owner: UInt32, expected: UInt32)
        case wrongSize(path: String, size: Int)

        public var description: String {
            switch self {
            case .missing(let path):
                "\(path) does not exist: without the key the log cannot be verified"
            case .io(let error):
                "\(error)"
            case .notAFile(let path):
                "\(path) is not a regular file (a symlink or something else); refusing to use it as the audit key"
            case .wrongOwner(let path, let owner, let expected):
                "\(path) is owned by uid \(owner), not uid \(expected): someone else controls the audit key; inspect it, then 'chown \(expected) \(path)' if it is genuine"
            case .wrongSize(let path, let size):
                "\(path) holds \(size) bytes, not \(AuditLogFormat.keyBytes): the key is damaged, so the log cannot be verified or continued"
            }
        }
    }

    /// What was found about the key file besides its bytes.
    public struct Loaded: @unchecked Sendable {
        // SymmetricKey is immutable; it is only not marked Sendable.
        public let key: SymmetricKey
        public let mode: mode_t
        public let created: Bool
    }

    /// Reads the key; with `create`, makes it when it does not exist.
    /// `owner` is the uid the file must belong to (nil: anyone's).
    public static func load(path: String, owner: UInt32?, create: Bool) throws(Failure) -> Loaded {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            let code = errno
            if code == ENOENT {
                guard create else { throw .missing(path: path) }
                return try make(path: path, owner: owner)
            }
            if code == ELOOP { throw .notAFile(path: path) }
            throw .io(AuditLogIOError(operation: "open", path: path, code: code))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(AuditLogIOError(operation: "stat", path: path, code: errno)) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .notAFile(path: path) }
        if let owner, info.st_uid != owner { throw .wrongOwner(path: path, owner: info.st_uid, expected: owner) }
        guard let bytes = LogFileIO.pread(fd, offset: 0, count: AuditLogFormat.keyBytes + 1) else {
            throw .io(AuditLogIOError(operation: "read", path: path, code: errno))
        }
        guard bytes.count == AuditLogFormat.keyBytes else { throw .wrongSize(path: path, size: Int(info.st_size)) }
        return Loaded(key: SymmetricKey(data: bytes), mode: info.st_mode & 0o7777, created: false)
    }

    private static func make(path: String, owner: UInt32?) throws(Failure) -> Loaded {
        let key = SymmetricKey(size: .bits256) // the system RNG, via BoringSSL
        let bytes = key.withUnsafeBytes { Array($0) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 {
            let code = errno
            // Another process made it a moment ago: use theirs.
            if code == EEXIST { return try load(path: path, owner: owner, create: false) }
            throw .io(AuditLogIOError(operation: "create", path: path, code: code))
        }
        var failure: AuditLogIOError?
        if let code = LogFileIO.writeAll(fd, bytes) { failure = AuditLogIOError(operation: "write", path: path, code: code) }
        if failure == nil && fsync(fd) != 0 { failure = AuditLogIOError(operation: "fsync", path: path, code: errno) }
        close(fd)
        if let failure {
            unlink(path)
            throw .io(failure)
        }
        LogFileIO.syncDirectory(of: path)
        return Loaded(key: key, mode: 0o600, created: true)
    }
}
