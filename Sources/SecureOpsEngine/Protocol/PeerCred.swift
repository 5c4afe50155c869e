/// Who is on the other end of a connection, as the kernel recorded it when
/// the peer called `connect()` (`SO_PEERCRED`). Never taken from anything the
/// client says.
public struct PeerCred: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// The default rule before a policy grants more: root and the daemon's
    /// own user may do everything; everyone else nothing.
    public func isAuthorized(daemonUID: UInt32) -> Bool {
        uid == 0 || uid == daemonUID
    }

    public var description: String { "uid=\(uid) gid=\(gid) pid=\(pid)" }
}
