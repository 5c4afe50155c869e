import Glibc
import SecureOpsSystem

/// A file `NATSConnectionOptions` names (CA, client certificate and key,
/// `.creds`, token, password), opened the way the daemon opens its policy:
/// every component from `/` checked on the descriptor it opened
/// (`TrustedPath`: no symbolic link, owned by root or the running user,
/// not writable by group or others), so nobody else can swap what the
/// forwarder authenticates with. A secret (key, `.creds`, token,
/// password) must in addition not be readable by others, as OpenSSH
/// holds private keys (group read is allowed, for `root:ssl-cert 0640`).
///
/// What libnats gets is what was checked: the contents from memory, or,
/// for a `.creds` file (libnats reads it again at every reconnect), the
/// checked descriptor through `/proc/self/fd`, which names the opened file
/// and never the path again.
struct CredentialFile {
    enum Kind {
        /// A CA or a client certificate: public, but trusted.
        case certificate
        case secret
    }

    let descriptor: FileDescriptor

    /// Files larger than this are refused (a certificate chain or a token
    /// is a few KiB).
    static let maximumBytes = 1 << 20

    /// Opens and checks `path`; `what` names it in errors ("token file").
    static func open(_ path: String, kind: Kind, what: String) throws(NATSError) -> CredentialFile {
        let opened: (descriptor: FileDescriptor, status: FileStatus)
        do {
            opened = try TrustedPath.open(path, trust: .rootAnd(geteuid()), flags: O_RDONLY)
        } catch {
            throw NATSError(what, text: "\(error)", needsOperator: true)
        }
        let status = opened.status
        guard status.kind == .regularFile else {
            throw NATSError(what, text: "\(path) is \(status.kind), not a regular file", needsOperator: true)
        }
        if kind == .secret && status.permissions & 0o007 != 0 {
            throw NATSError(
                what, text: "\(path) is readable by others (mode \(String(status.permissions, radix: 8))); chmod o-rwx \(path)",
                needsOperator: true)
        }
        guard status.size <= maximumBytes else {
            throw NATSError(what, text: "\(path) is \(status.size) bytes, more than a credential file holds", needsOperator: true)
        }
        return CredentialFile(descriptor: opened.descriptor)
    }

    /// Opens, checks and reads `path`.
    static func read(_ path: String, kind: Kind, what: String) throws(NATSError) -> String {
        let file = try open(path, kind: kind, what: what)
        guard let bytes = file.descriptor.read(at: 0, count: maximumBytes) else {
            throw NATSError(what, text: "read \(path): \(String(cString: strerror(errno)))", needsOperator: true)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A path that opens the checked file itself, for as long as this lives.
    var procPath: String { "/proc/self/fd/\(descriptor.raw)" }
}
