import Glibc
import SecureOpsEngine
import SecureOpsSystem

/// Reads and validates a policy file. Every problem is reported with where
/// it is and what would be accepted; nothing half-valid is ever returned.
public enum PolicyLoader {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var path: String
        public var reason: String
        public var description: String { "policy \(path): \(reason)" }

        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }

        /// A problem found on the way to the file, said from the file's side.
        init(path: String, problem: PathProblem) {
            self.path = path
            reason = problem.component == path ? problem.reason : "\(problem.component) \(problem.reason)"
        }
    }

    /// Reads, validates and checks a policy file: the file and every
    /// directory above it, and the `onKill` program and every directory
    /// above it, must be changeable only by root or the daemon's user.
    public static func load(path: String, daemonUID: UInt32 = geteuid()) throws(Failure) -> Policy {
        let bytes = try readSecurely(path: path, daemonUID: daemonUID)
        let document: PolicyDocument
        do {
            document = try FastJSONDecoder().decode(PolicyDocument.self, from: bytes)
        } catch {
            throw Failure(path: path, reason: "\(error)")
        }
        let policy = try resolve(document, path: path)
        if let program = policy.onKill?.command.first {
            do {
                _ = try OnKillProgram.open(program, daemonUID: daemonUID)
            } catch {
                throw Failure(path: path, reason: "onKill.command[0]: \(error)")
            }
        }
        return policy
    }

    /// Parses policy text (for tests and `secureopsd check-policy`).
    public static func parse(_ text: String, path: String = "(inline)") throws(Failure) -> Policy {
        let document: PolicyDocument
        do {
            document = try FastJSONDecoder().decode(PolicyDocument.self, from: Array(text.utf8))
        } catch {
            throw Failure(path: path, reason: "\(error)")
        }
        return try resolve(document, path: path)
    }

    /// Opens the file through `TrustedPath`: no symbolic link anywhere on
    /// the way, and the file and every directory above it owned by root or
    /// the daemon's user and not writable by anyone else (a sticky directory
    /// like /tmp excepted), so nobody else can edit or swap it. Then reads
    /// it whole, from that descriptor.
    static func readSecurely(path: String, daemonUID: UInt32) throws(Failure) -> [UInt8] {
        let opened: (descriptor: FileDescriptor, status: FileStatus)
        do {
            opened = try TrustedPath.open(path, trust: .rootAnd(daemonUID), flags: O_RDONLY)
        } catch {
            throw Failure(path: path, problem: error)
        }
        guard opened.status.kind == .regularFile else { throw Failure(path: path, reason: "is \(opened.status.kind), not a regular file") }
        guard opened.status.size <= 1 << 20 else { throw Failure(path: path, reason: "is larger than 1 MiB") }
        guard let bytes = opened.descriptor.read(at: 0, count: opened.status.size) else {
            throw Failure(path: path, reason: "cannot be read: \(String(cString: strerror(errno)))")
        }
        return bytes
    }

    static func resolve(_ document: PolicyDocument, path: String) throws(Failure) -> Policy {
        var grants: [Policy.Grant] = []
        for (index, grant) in document.grants.enumerated() {
            let place = "grants[\(index)]"
            let named = [grant.uid != nil, grant.gid != nil, grant.user != nil, grant.group != nil].filter { $0 }.count
            guard named == 1 else {
                throw Failure(path: path, reason: "\(place): give exactly one of uid, gid, user or group")
            }
            var allow = VerbSet()
            for verb in grant.allow {
                if verb == "*" {
                    allow = .all
                } else if let known = PolicyVerb(rawValue: verb) {
                    allow.insert(VerbSet(known))
                } else {
                    throw Failure(path: path, reason: "\(place).allow: unknown verb \"\(verb)\"; expected \"*\" or one of \(PolicyVerb.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            if let uid = grant.uid {
                grants.append(.init(subject: .uid(uid), allow: allow, label: "uid \(uid)"))
            } else if let gid = grant.gid {
                grants.append(.init(subject: .gid(gid), allow: allow, label: "gid \(gid)"))
            } else if let user = grant.user {
                guard let uid = SystemUsers.uid(named: user) else {
                    throw Failure(path: path, reason: "\(place).user: no user named \"\(user)\" on this system")
                }
                grants.append(.init(subject: .uid(uid), allow: allow, label: "user \(user)"))
            } else if let group = grant.group {
                guard let gid = SystemUsers.gid(named: group) else {
                    throw Failure(path: path, reason: "\(place).group: no group named \"\(group)\" on this system")
                }
                grants.append(.init(subject: .gid(gid), allow: allow, label: "group \(group)"))
            }
        }
        var limits = Policy.Limits()
        if let given = document.limits {
            if let value = given.maxFrameBytes {
                guard (64...(64 << 20)).contains(value) else {
                    throw Failure(path: path, reason: "limits.maxFrameBytes: \(value) is outside 64...67108864")
                }
                limits.maxFrameBytes = value
            }
            if let value = given.maxConnectionsPerUid {
                guard value >= 1 else { throw Failure(path: path, reason: "limits.maxConnectionsPerUid: must be at least 1") }
                limits.maxConnectionsPerUid = value
            }
            if let value = given.retainedAlerts {
                guard (1...(16 << 20)).contains(value) else {
                    throw Failure(path: path, reason: "limits.retainedAlerts: \(value) is outside 1...16777216")
                }
                limits.retainedAlerts = value
            }
            if let value = given.onLag { limits.onLag = value }
        }
        var onKill: Policy.KillCommand?
        if let kill = document.onKill {
            guard let program = kill.command.first, !program.isEmpty else {
                throw Failure(path: path, reason: "onKill.command: give the program and its arguments, e.g. [\"/usr/local/bin/stop-agent\", \"--now\"]")
            }
            guard program.hasPrefix("/") else {
                throw Failure(path: path, reason: "onKill.command[0]: \"\(program)\" must be an absolute path (no shell and no PATH lookup is used)")
            }
            let timeout = kill.timeoutSecs ?? 10
            guard timeout > 0 && timeout <= 3600 else {
                throw Failure(path: path, reason: "onKill.timeoutSecs: must be within 0...3600 seconds")
            }
            onKill = Policy.KillCommand(command: kill.command, timeoutSecs: timeout)
        }
        guard document.version >= 1 else {
            throw Failure(path: path, reason: "version: must be a positive integer")
        }
        return Policy(version: document.version, grants: grants, limits: limits, onKill: onKill, path: path)
    }
}

/// The file's shape; unknown keys anywhere are errors (a typo in a security
/// policy must not silently grant or deny).
struct PolicyDocument: Decodable {
    var version: Int
    var grants: [GrantDocument]
    var limits: LimitsDocument?
    var onKill: KillDocument?

    enum CodingKeys: String, CodingKey, CaseIterable { case version, grants, limits, onKill }

    init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        grants = try c.decodeIfPresent([GrantDocument].self, forKey: .grants) ?? []
        limits = try c.decodeIfPresent(LimitsDocument.self, forKey: .limits)
        onKill = try c.decodeIfPresent(KillDocument.self, forKey: .onKill)
    }

    struct GrantDocument: Decodable {
        var uid: UInt32?
        var gid: UInt32?
        var user: String?
        var group: String?
        var allow: [String]

        enum CodingKeys: String, CodingKey, CaseIterable { case uid, gid, user, group, allow }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: CodingKeys.self)
            uid = try c.decodeIfPresent(UInt32.self, forKey: .uid)
            gid = try c.decodeIfPresent(UInt32.self, forKey: .gid)
            user = try c.decodeIfPresent(String.self, forKey: .user)
            group = try c.decodeIfPresent(String.self, forKey: .group)
            allow = try c.decode([String].self, forKey: .allow)
        }
    }

    struct LimitsDocument: Decodable {
        var maxFrameBytes: Int?
        var maxConnectionsPerUid: Int?
        var retainedAlerts: Int?
        var onLag: LagPolicy?

        enum CodingKeys: String, CodingKey, CaseIterable { case maxFrameBytes, maxConnectionsPerUid, retainedAlerts, onLag }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxFrameBytes = try c.decodeIfPresent(Int.self, forKey: .maxFrameBytes)
            maxConnectionsPerUid = try c.decodeIfPresent(Int.self, forKey: .maxConnectionsPerUid)
            retainedAlerts = try c.decodeIfPresent(Int.self, forKey: .retainedAlerts)
            if let text = try c.decodeIfPresent(String.self, forKey: .onLag) {
                guard let lag = LagPolicy(rawValue: text) else {
                    throw DecodingError.dataCorruptedError(forKey: .onLag, in: c, debugDescription: "expected one of skip, disconnect, found \"\(text)\"")
                }
                onLag = lag
            }
        }
    }

    struct KillDocument: Decodable {
        var command: [String]
        var timeoutSecs: Double?

        enum CodingKeys: String, CodingKey, CaseIterable { case command, timeoutSecs }

        init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: CodingKeys.self)
            command = try c.decode([String].self, forKey: .command)
            timeoutSecs = try c.decodeIfPresent(Double.self, forKey: .timeoutSecs)
        }
    }
}

struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

func rejectUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
    let container = try decoder.container(keyedBy: AnyCodingKey.self)
    for key in container.allKeys where !known.contains(key.stringValue) {
        throw DecodingError.dataCorruptedError(
            forKey: key, in: container,
            debugDescription: "unknown key \"\(key.stringValue)\"; expected one of \(known.joined(separator: ", "))")
    }
}
