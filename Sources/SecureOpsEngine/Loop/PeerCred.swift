import SecureOpsSystem

/// Who is on the other end of a connection, from `SO_PEERCRED`
/// (`SecureOpsSystem.PeerCred`, named here so embedders need one import).
public typealias PeerCred = SecureOpsSystem.PeerCred

extension AlertOrigin {
    /// The origin a publisher's credentials give its alerts.
    public init(_ peer: PeerCred) {
        self.init(uid: peer.uid, pid: peer.pid)
    }
}
