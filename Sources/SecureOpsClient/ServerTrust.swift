import Glibc
import SecureOpsSystem

/// Who a client accepts as the server on a socket path: the kernel tells
/// the uid that created the listening socket (`SO_PEERCRED` on the client
/// side), and that uid must be
///
/// - root, or the caller's own uid;
/// - or the owner of the socket's directory, when that directory is not
///   writable by group or others and sits in a directory only root or the
///   caller can write (so nobody else could have made it: a directory in a
///   shared /tmp vouches for nothing, `/run/secureops` made by root for a
///   dedicated `secureops` user does);
/// - or the uid named by `expectedUID` (`--server-uid`,
///   `SECUREOPS_SERVER_UID`), which then is the only one accepted.
///
/// Without this, a user squatting the default `/tmp/secureops-$UID` path
/// receives the caller's `kill` and answers "ok".
public struct ServerTrust: Sendable, Equatable {
    /// The only uid accepted, when given.
    public var expectedUID: UInt32?

    public init(expectedUID: UInt32? = nil) {
        self.expectedUID = expectedUID
    }

    /// The variable that names the expected server uid.
    public static let environmentVariable = "SECUREOPS_SERVER_UID"

    /// `SECUREOPS_SERVER_UID` when set (and a valid uid), else the default rule.
    public static var fromEnvironment: ServerTrust {
        guard let value = getenv(environmentVariable), let uid = UInt32(String(cString: value)) else { return ServerTrust() }
        return ServerTrust(expectedUID: uid)
    }

    /// Checks the server on the connected socket `fd` (connected to `path`).
    public func check(socket fd: Int32, path: String) throws(IpcError) {
        let server: PeerCred
        switch PeerCred.of(socket: fd) {
        case .success(let credentials): server = credentials
        case .failure(let error): throw .untrustedServer("cannot tell who serves \(path): \(error)")
        }
        let me = getuid()
        if let expectedUID {
            guard server.uid == expectedUID else {
                throw .untrustedServer("refusing to talk to \(path): it is served by uid \(server.uid), not the expected uid \(expectedUID) (--server-uid / \(Self.environmentVariable))")
            }
            return
        }
        if server.uid == 0 || server.uid == me { return }
        if let owner = Self.vouchedOwner(ofDirectoryOf: path, caller: me), owner == server.uid { return }
        throw .untrustedServer(
            "refusing to talk to \(path): it is served by uid \(server.uid), which is neither root, you (uid \(me)), nor the owner of a private socket directory only root could have made; if uid \(server.uid) runs your secureopsd, pass --server-uid \(server.uid) or set \(Self.environmentVariable)=\(server.uid)")
    }

    /// The owner of `path`'s directory, if that directory is private and in
    /// a directory only root or `caller` may write (checked from `/` down,
    /// on descriptors).
    static func vouchedOwner(ofDirectoryOf path: String, caller: UInt32) -> UInt32? {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return nil }
        let directory = String(path[..<slash])
        guard let parentSlash = directory.lastIndex(of: "/") else { return nil }
        let parent = parentSlash == directory.startIndex ? "/" : String(directory[..<parentSlash])
        let name = String(directory[directory.index(after: parentSlash)...])
        guard let opened = try? OpenedDirectory.trusted(parent, trust: .rootAnd(caller)),
              let status = try? opened.statusOf(name),
              status.kind == .directory, !status.isWritableByGroupOrOthers
        else { return nil }
        return status.owner
    }
}

extension OpenedDirectory {
    /// A directory reached through `TrustedPath` and not writable by group
    /// or others (sticky or not).
    static func trusted(_ path: String, trust: PathTrust) throws(PathProblem) -> OpenedDirectory {
        let (descriptor, status) = try TrustedPath.open(path, trust: trust, flags: SystemFlags.pathOnly | O_DIRECTORY)
        return OpenedDirectory(descriptor: descriptor, path: path, status: status)
    }
}
