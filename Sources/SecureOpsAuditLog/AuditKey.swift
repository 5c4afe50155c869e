import Crypto
import Glibc
import SecureOpsSystem

/// The HMAC key in `audit.key`: 32 random bytes, mode 0600, created once
/// with `O_EXCL` so two processes can never each make their own.
public enum AuditKey {
    public enum Failure: Error, CustomStringConvertible, Sendable {
        case missing(path: String)
        case io(SystemError)
        case untrusted(StateFileProblem)
        case wrongSize(path: String, size: Int)

        public var description: String {
            switch self {
            case .missing(let path):
                "\(path) does not exist: without the key the log cannot be verified"
            case .io(let error):
                "\(error)"
            case .untrusted(let problem):
                "\(problem)"
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

    /// Reads the key from `directory`; with `create`, makes it when it does
    /// not exist. `owner` is the uid the file must belong to (nil: anyone's,
    /// for root verifying a dedicated user's log).
    public static func load(in directory: OpenedDirectory, owner: UInt32?, create: Bool) throws(Failure) -> Loaded {
        let name = AuditLogFormat.keyFileName
        let path = directory.pathOf(name)
        let opened: (FileDescriptor, FileStatus)
        do {
            opened = try StateFile.open(name, in: directory, flags: O_RDONLY, owner: owner)
        } catch {
            if error.code == ENOENT {
                guard create else { throw .missing(path: path) }
                return try make(in: directory, owner: owner)
            }
            throw .untrusted(error)
        }
        let (file, status) = opened
        guard let bytes = file.read(at: 0, count: AuditLogFormat.keyBytes + 1) else { throw .io(SystemError("read", path)) }
        guard bytes.count == AuditLogFormat.keyBytes else { throw .wrongSize(path: path, size: status.size) }
        return Loaded(key: SymmetricKey(data: bytes), mode: status.permissions, created: false)
    }

    private static func make(in directory: OpenedDirectory, owner: UInt32?) throws(Failure) -> Loaded {
        let name = AuditLogFormat.keyFileName
        let key = SymmetricKey(size: .bits256) // the system RNG, via BoringSSL
        let bytes = key.withUnsafeBytes { Array($0) }
        let file: FileDescriptor
        do {
            file = try directory.openFile(name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        } catch {
            // Another process made it a moment ago: use theirs.
            if error.code == EEXIST { return try load(in: directory, owner: owner, create: false) }
            throw .io(SystemError("create", directory.pathOf(name), code: error.code))
        }
        var failure: SystemError?
        if let code = file.writeAll(bytes) { failure = SystemError("write", directory.pathOf(name), code: code) }
        if failure == nil, let code = file.sync() { failure = SystemError("fsync", directory.pathOf(name), code: code) }
        file.close()
        if let failure {
            _ = try? directory.remove(name)
            throw .io(failure)
        }
        directory.sync()
        return Loaded(key: key, mode: 0o600, created: true)
    }
}
