import Foundation
import Testing
import SecureOpsDaemon
import SecureOpsEngine

/// The policy file: the documented shape, and a precise message for every
/// way it can be wrong (content, ownership, mode, location).
@Suite("Policy file", .timeLimit(.minutes(2)))
struct PolicyTests {
    /// The issue's example, with `alice` replaced by a user this host has.
    static let example = #"""
        {"version": 2, "grants": [{"uid": 65534, "allow": ["ping", "status", "subscribe", "alerts"]}, {"gid": 120, "allow": ["*"]}, {"user": "nobody", "allow": ["publish"]}], "limits": {"maxFrameBytes": 1048576, "maxConnectionsPerUid": 1024, "retainedAlerts": 65536, "onLag": "skip"}, "onKill": {"command": ["/usr/local/bin/stop-agent", "--now"], "timeoutSecs": 10}}
        """#

    @Test func theDocumentedExampleParsesIntoGrantsLimitsAndOnKill() throws {
        let policy = try PolicyLoader.parse(Self.example)
        #expect(policy.version == 2)
        #expect(policy.grants.map(\.label) == ["uid 65534", "gid 120", "user nobody"])
        #expect(policy.limits.maxFrameBytes == 1_048_576)
        #expect(policy.limits.maxConnectionsPerUid == 1024)
        #expect(policy.limits.retainedAlerts == 65_536)
        #expect(policy.limits.onLag == .skip)
        #expect(policy.onKill?.command == ["/usr/local/bin/stop-agent", "--now"])
        #expect(policy.onKill?.timeoutSecs == 10)

        let nobody = PeerCred(pid: 1, uid: 65534, gid: 65534)
        // uid 65534 by uid and by user name: the union of both grants.
        #expect(policy.allowedVerbs(for: nobody, groups: [], daemonUID: 0).description == "ping, status, subscribe, alerts, publish")
        #expect(policy.allowedVerbs(for: PeerCred(pid: 1, uid: 4242, gid: 7), groups: [120], daemonUID: 0) == .all)
        #expect(policy.allowedVerbs(for: PeerCred(pid: 1, uid: 4242, gid: 7), groups: [], daemonUID: 0).isEmpty)
        #expect(policy.allowedVerbs(for: PeerCred(pid: 1, uid: 4242, gid: 7), groups: [], daemonUID: 4242) == .all)
    }

    @Test(arguments: [
        (#"{"version": 1, "grants": [{"user": "alice", "allow": ["publish"]}]}"#, #"grants[0].user: no user named "alice" on this system"#),
        (#"{"version": 1, "grants": [{"uid": 1, "allow": ["ping"], "deny": ["kill"]}]}"#, #"grants[0].deny: unknown key "deny"; expected one of uid, gid, user, group, allow"#),
        (#"{"version": 1, "grants": [{"uid": 1, "gid": 2, "allow": ["ping"]}]}"#, "grants[0]: give exactly one of uid, gid, user or group"),
        (#"{"version": 1, "grants": [{"uid": 1, "allow": "ping"}]}"#, "grants[0].allow: expected a JSON array, found a string"),
        (#"{"version": 1, "grants": [{"uid": 1, "allow": ["Ping"]}]}"#, #"grants[0].allow: unknown verb "Ping"; expected "*" or one of ping, status, audit, auditFix, kill, subscribe, alerts, reloadPolicy, publish"#),
        (#"{"version": 1, "grants": [], "limits": {"maxConnectionsPerUid": 0}}"#, "limits.maxConnectionsPerUid: must be at least 1"),
        (#"{"version": 1, "grants": [], "limits": {"maxFrameBytes": 10}}"#, "limits.maxFrameBytes: 10 is outside 64...67108864"),
        (#"{"version": 1, "grants": [], "onKill": {"command": ["stop-agent"]}}"#, #"onKill.command[0]: "stop-agent" must be an absolute path"#),
        (#"{"version": 1, "grants": [], "onKill": {"command": ["/bin/true"], "timeoutSecs": 0}}"#, "onKill.timeoutSecs: must be within"),
        (#"{"version": 0, "grants": []}"#, "version: must be a positive integer"),
        (#"{"grants": []}"#, "version"),
    ])
    func everyMistakeIsNamedWithWhereItIs(text: String, message: String) {
        #expect(throws: PolicyLoader.Failure.self) { try PolicyLoader.parse(text) }
        do {
            _ = try PolicyLoader.parse(text)
        } catch {
            #expect(error.description.contains(message), "got \(error.description)")
        }
    }

    // MARK: - The file itself

    func scratchDirectory() throws -> String {
        return try makeTemporaryDirectory("secureops-policy")
    }

    /// Writes the example to `directory/policy.json`, its onKill program
    /// being a script in `directory` (loading checks the program exists
    /// and only root may change it).
    func writeExample(in directory: String) throws -> String {
        let program = try writeStopAgent(in: directory)
        let path = directory + "/policy.json"
        try Self.example.replacingOccurrences(of: "/usr/local/bin/stop-agent", with: program).write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    @Test func aFileWritableByGroupOrOthersIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = try writeExample(in: directory)
        chmod(path, 0o664)
        #expect(throws: PolicyLoader.Failure(path: path, reason: "is writable by group or others (mode 0664), who could change it; run 'chmod go-w \(path)'")) {
            try PolicyLoader.load(path: path)
        }
        chmod(path, 0o644)
        #expect(try PolicyLoader.load(path: path).version == 2)
    }

    @Test func aFileOwnedBySomeoneElseIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/policy.json"
        try Self.example.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        chown(path, 65534, 65534)
        #expect(throws: PolicyLoader.Failure(path: path, reason: "is owned by uid 65534, who could change it; it must be owned by root")) {
            try PolicyLoader.load(path: path)
        }
    }

    @Test func aSymlinkIsRefusedNotFollowed() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/policy.json"
        try Self.example.write(toFile: directory + "/real.json", atomically: false, encoding: .utf8)
        symlink(directory + "/real.json", path)
        #expect(throws: PolicyLoader.Failure(path: path, reason: "is a symbolic link to \(directory)/real.json; give the real path instead")) {
            try PolicyLoader.load(path: path)
        }
    }

    @Test func aFileInADirectoryOthersCanWriteIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = try writeExample(in: directory)
        chmod(path, 0o644)
        chmod(directory, 0o777)
        #expect(throws: PolicyLoader.Failure(path: path, reason: "\(directory) is writable by group or others (mode 0777), who could replace what lies beneath it; run 'chmod go-w \(directory)'")) {
            try PolicyLoader.load(path: path)
        }
        // A sticky directory like /tmp protects files others do not own.
        chmod(directory, 0o1777)
        #expect(try PolicyLoader.load(path: path).version == 2)
    }

    /// Every directory above the file counts, not only its own: whoever
    /// owns one could rename the whole subtree and put another file there.
    @Test func aFileBelowADirectoryAnotherUserOwnsHigherUpIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o755)
        let theirs = directory + "/theirs"
        let conf = theirs + "/conf"
        mkdir(theirs, 0o755)
        mkdir(conf, 0o755)
        let path = try writeExample(in: conf)
        chmod(path, 0o644)
        #expect(try PolicyLoader.load(path: path).version == 2)
        chown(theirs, 65534, 65534)
        #expect(throws: PolicyLoader.Failure(path: path, reason: "\(theirs) is owned by uid 65534, who could replace what lies beneath it; it must be owned by root")) {
            try PolicyLoader.load(path: path)
        }
    }

    @Test func checkPolicyPrintsWhatTheFileGrants() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = try writeExample(in: directory)
        chmod(path, 0o644)
        let (status, output) = try runDaemon(["check-policy", path])
        #expect(status == 0)
        #expect(output == """
            policy version 2: 3 grant(s)
              uid 65534: ping, status, subscribe, alerts
              gid 120: *
              user nobody: publish

            """)
    }
}
