import Glibc
import SecureOpsEngine

/// Who may do what on the control socket, and the daemon's limits.
///
/// Root and the daemon's own uid may always do everything; everyone else
/// gets exactly the verbs their grants list (by uid, gid, user name or group
/// name; `"*"` means every verb). A peer granted nothing is refused at
/// connect time.
public struct Policy: Sendable, Equatable {
    public var version: Int
    public var grants: [Grant]
    public var limits: Limits
    public var onKill: KillCommand?
    /// Where it was loaded from; nil for the built-in default.
    public var path: String?

    /// Used when no policy file is configured: nobody but root and the
    /// daemon's own user.
    public static let builtIn = Policy(version: 1, grants: [], limits: Limits(), onKill: nil, path: nil)

    public init(version: Int, grants: [Grant], limits: Limits, onKill: KillCommand?, path: String?) {
        self.version = version
        self.grants = grants
        self.limits = limits
        self.onKill = onKill
        self.path = path
    }

    public struct Grant: Sendable, Equatable {
        public enum Subject: Sendable, Equatable, CustomStringConvertible {
            case uid(UInt32)
            case gid(UInt32)

            public var description: String {
                switch self {
                case .uid(let uid): "uid \(uid)"
                case .gid(let gid): "gid \(gid)"
                }
            }
        }

        public var subject: Subject
        public var allow: VerbSet
        /// How the file named it (`user alice`), for messages.
        public var label: String
    }

    public struct Limits: Sendable, Equatable {
        /// Connections one uid other than root and the daemon's may hold,
        /// unless the policy says otherwise.
        public static let defaultMaxConnectionsPerUid = 1024

        public var maxFrameBytes = WireDefaults.maxFrameBytes
        public var maxConnectionsPerUid = Limits.defaultMaxConnectionsPerUid
        public var retainedAlerts = 65_536
        public var onLag = LagPolicy.skip

        public init() {}
    }

    public struct KillCommand: Sendable, Equatable {
        public var command: [String]
        public var timeoutSecs: Double
    }

    /// The verbs `peer` may use under this policy.
    public func allowedVerbs(for peer: PeerCred, groups: [UInt32], daemonUID: UInt32) -> VerbSet {
        if peer.uid == 0 || peer.uid == daemonUID { return .all }
        var allowed = VerbSet()
        for grant in grants {
            switch grant.subject {
            case .uid(let uid) where uid == peer.uid:
                allowed.formUnion(grant.allow)
            case .gid(let gid) where gid == peer.gid || groups.contains(gid):
                allowed.formUnion(grant.allow)
            default:
                break
            }
        }
        return allowed
    }
}

extension PeerCred {
    /// Root and the daemon's own user: always allowed everything, exempt
    /// from the per-uid cap, and served from the reserved connection slots.
    public func isPrivileged(daemonUID: UInt32) -> Bool {
        uid == 0 || uid == daemonUID
    }
}

/// What a policy grants: each request type of WIRE.md by its tag, and
/// `auditFix`: an `audit` with `"fix":true` changes the host (file modes),
/// so reading the audit does not imply it.
public enum PolicyVerb: String, Sendable, CaseIterable {
    case ping, status, audit, auditFix, kill, subscribe, alerts, reloadPolicy, publish

    /// The verb `request` needs.
    public init(_ request: IpcRequest) {
        switch request {
        case .ping: self = .ping
        case .status: self = .status
        case .audit(let options): self = options.fix ? .auditFix : .audit
        case .kill: self = .kill
        case .subscribe: self = .subscribe
        case .alerts: self = .alerts
        case .reloadPolicy: self = .reloadPolicy
        case .publish: self = .publish
        }
    }

    /// How a denial names what was asked.
    public var requestDescription: String {
        self == .auditFix ? "\"audit\" with \"fix\" (policy verb \"auditFix\")" : "\"\(rawValue)\""
    }
}

/// A set of policy verbs, as a bit mask.
public struct VerbSet: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public init(_ verb: PolicyVerb) {
        rawValue = 1 << UInt16(PolicyVerb.allCases.firstIndex(of: verb)!)
    }

    public static let all = VerbSet(rawValue: (1 << UInt16(PolicyVerb.allCases.count)) - 1)

    public func contains(_ verb: PolicyVerb) -> Bool {
        contains(VerbSet(verb))
    }

    public var verbs: [PolicyVerb] {
        PolicyVerb.allCases.filter { contains($0) }
    }

    public var description: String {
        self == .all ? "*" : verbs.map(\.rawValue).joined(separator: ", ")
    }
}
