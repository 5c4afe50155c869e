import CSecureOpsSystem
import Glibc

/// Who is on the other end of a Unix-socket connection, as the kernel
/// recorded it when the peer called `connect()` (`SO_PEERCRED`), or, on the
/// client side, when the server called `listen()`. Never taken from
/// anything the other side says.
public struct PeerCred: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// The credentials of the peer of a connected Unix socket.
    public static func of(socket fd: Int32) -> Result<PeerCred, SystemError> {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        let rc = cs_peer_credentials(fd, &pid, &uid, &gid)
        guard rc == 0 else { return .failure(SystemError("getsockopt(SO_PEERCRED)", "socket \(fd)", code: -rc)) }
        return .success(PeerCred(pid: pid, uid: uid, gid: gid))
    }

    /// The peer's supplementary groups at connect time (`SO_PEERGROUPS`);
    /// empty when the kernel cannot say (a peer in more than 256 groups
    /// gets none, so group grants fail closed).
    public static func groups(ofSocket fd: Int32) -> [UInt32] {
        withUnsafeTemporaryAllocation(of: gid_t.self, capacity: 256) { buffer in
            let count = cs_peer_groups(fd, buffer.baseAddress, 256)
            guard count > 0 else { return [] }
            return Array(buffer[0..<Int(count)])
        }
    }

    public var description: String { "uid=\(uid) gid=\(gid) pid=\(pid)" }
}
