import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Who may do what, from SO_PEERCRED and the policy file, with a real
/// second uid (65534 via setpriv) on a socket of mode 0666 in a test
/// directory; policy reloads by request and by SIGHUP; the per-uid cap.
@Suite("Control plane: authorization and policy", .timeLimit(.minutes(2)))
struct ControlPlaneAuthorizationTests {
    static func policy(version: Int = 2, grants: String, limits: String? = nil) -> String {
        #"{"version": \#(version), "grants": [\#(grants)]"# + (limits.map { #", "limits": \#($0)"# } ?? "") + "}"
    }

    func daemon(_ policy: String) throws -> DaemonProcess {
        try DaemonProcess(policy: policy, socketMode: "0666", reachableByOtherUsers: true)
    }

    @Test func anUnlistedUidGetsOneErrorAndIsDisconnected() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 12345, "allow": ["*"]}"#))
        let replies = try SecondUser.exchange(daemon.socketPath, [#"{"type":"ping"}"#, #"{"type":"ping"}"#])
        #expect(replies.count == 2, "got \(replies)")
        #expect(replies.first?.hasPrefix(#"{"type":"err","message":"not authorized: uid 65534 may not use this socket (policy version 2 grants it nothing)"#) == true, "got \(replies)")
        #expect(replies.last == "EOF")
        let refused = try waitForAuditRecord(daemon.stateDirectory, event: "connection-refused")
        #expect(refused.first?.int("uid") == 65534)
    }

    @Test func grantedVerbsAreAnsweredOthersDeniedAndTheConnectionStaysOpen() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping", "status", "subscribe", "alerts"]}"#))
        let replies = try SecondUser.exchange(daemon.socketPath, [
            #"{"type":"ping"}"#, #"{"type":"kill","reason":"not yours"}"#, #"{"type":"reloadPolicy"}"#,
            #"{"type":"publish","alert":{"severity":"high","source":"s","message":"m"}}"#, #"{"type":"status"}"#,
        ])
        #expect(replies.count == 6, "got \(replies)")
        guard replies.count == 6 else { return }
        #expect(replies[0] == #"{"type":"ok"}"#)
        #expect(replies[1] == #"{"type":"err","message":"not authorized: uid 65534 may not use \"kill\" (allowed: ping, status, subscribe, alerts)"}"#)
        #expect(replies[2].contains(#"may not use \"reloadPolicy\""#))
        #expect(replies[3].contains(#"may not use \"publish\""#))
        #expect(replies[4].hasPrefix(#"{"type":"ok","running":true,"killed":false"#))
        #expect(replies[5] == "OPEN")
        // The denied kill did nothing, and each denial is on record.
        #expect(try daemon.connect().status().killed == false)
        try waitUntil("three denied records") { try auditFields(daemon.stateDirectory, event: "denied").count == 3 }
        let denied = try auditFields(daemon.stateDirectory, event: "denied")
        #expect(denied.map { $0.string("verb") } == ["kill", "reloadPolicy", "publish"])
        #expect(denied.allSatisfy { $0.int("uid") == 65534 && $0.int("pid") != nil })
    }

    @Test func aGroupGrantMatchesASupplementaryGroupFromTheKernel() throws {
        let daemon = try daemon(Self.policy(grants: #"{"gid": 100, "allow": ["ping"]}"#))
        let member = try SecondUser.exchange(daemon.socketPath, [#"{"type":"ping"}"#], groups: [100])
        #expect(member == [#"{"type":"ok"}"#, "OPEN"])
        let outsider = try SecondUser.exchange(daemon.socketPath, [#"{"type":"ping"}"#])
        #expect(outsider.first?.contains("grants it nothing") == true, "got \(outsider)")
        #expect(outsider.last == "EOF")
    }

    @Test func aGroupNamedInThePolicyIsResolvedThroughNSS() throws {
        let daemon = try daemon(Self.policy(grants: #"{"group": "nogroup", "allow": ["status"]}"#))
        let replies = try SecondUser.exchange(daemon.socketPath, [#"{"type":"status"}"#, #"{"type":"ping"}"#])
        #expect(replies.count == 3, "got \(replies)")
        #expect(replies.first?.hasPrefix(#"{"type":"ok","running":true"#) == true)
        #expect(replies.dropFirst().first?.contains(#"may not use \"ping\" (allowed: status)"#) == true)
    }

    @Test func deniedRequestsAreRecordedAtMostTenPerUidPerMinuteAndTheRestSummarized() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        let replies = try SecondUser.exchange(daemon.socketPath, Array(repeating: #"{"type":"audit"}"#, count: 25))
        #expect(replies.filter { $0.contains(#"may not use \"audit\""#) }.count == 25)
        try daemon.stop()
        let denied = try auditFields(daemon.stateDirectory, event: "denied")
        #expect(denied.count == 10)
        let summary = try auditFields(daemon.stateDirectory, event: "denied-suppressed")
        #expect(summary.count == 1)
        #expect(summary.first?.int("uid") == 65534)
        #expect(summary.first?.int("count") == 15)
    }

    @Test func aReloadThatRemovesEveryGrantClosesAnOpenConnectionAtItsNextRequest() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        let held = try SecondUser.start(daemon.socketPath, [#"{"type":"ping"}"#, "@hold=3", #"{"type":"ping"}"#])
        // The polling connection plus the held one: admitted under version 2.
        _ = try daemon.waitForStatus { $0.connections >= 2 }
        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"uid": 12345, "allow": ["ping"]}"#))
        #expect(try daemon.connect().reloadPolicy() == 3)
        let replies = SecondUser.output(of: held)
        #expect(replies.contains { $0.contains("not authorized: uid 65534 may not use this socket (policy version 3 grants it nothing)") }, "got \(replies)")
        #expect(replies.last == "EOF")
    }

    // MARK: - Reloads

    @Test func reloadingAGoodFileAppliesItAtOnceAndStatusReportsItsVersion() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        #expect(try SecondUser.exchange(daemon.socketPath, [#"{"type":"status"}"#]).first?.contains("may not use") == true)
        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"user": "nobody", "allow": ["ping", "status"]}"#))
        let (status, output) = try run(DaemonProcess.cliPath, ["reload", "--socket", daemon.socketPath])
        #expect(status == 0)
        #expect(output == "policy version 3 in force\n")
        #expect(try SecondUser.exchange(daemon.socketPath, [#"{"type":"status"}"#]).first?.contains(#""policyVersion":3"#) == true)
        #expect(try daemon.connect().status().policyVersion == 3)
        let reloads = try auditFields(daemon.stateDirectory, event: "policy-reload")
        #expect(reloads.count == 1)
        #expect(reloads.first?.string("result") == "applied")
        #expect(reloads.first?.int("previousVersion") == 2)
        #expect(reloads.first?.int("version") == 3)
        #expect(reloads.first?.string("trigger") == "reloadPolicy")
    }

    /// Each broken file is refused with a message that names the problem;
    /// the old policy keeps working and the rejection is on record.
    @Test(arguments: [
        (#"{"version": 3, "grants": [{"uid": 65534, "allow": ["ping", "reboot"]}]}"#, #"grants[0].allow: unknown verb "reboot""#),
        (#"{"version": 3, "grants": [], "owner": "me"}"#, #"owner: unknown key "owner"; expected one of version, grants, limits, onKill"#),
        (#"{"version": 3, "grants": [{"uid": "65534", "allow": ["ping"]}]}"#, "grants[0].uid: expected an integer"),
        (#"{"version": 3, "grants": [{"user": "no-such-user-here", "allow": ["ping"]}]}"#, #"grants[0].user: no user named "no-such-user-here""#),
        (#"{"version": 3, "grants": [{"group": "no-such-group-here", "allow": ["ping"]}]}"#, #"grants[0].group: no group named "no-such-group-here""#),
        (#"{"version": 3, "grants": [], "limits": {"onLag": "drop"}}"#, #"limits.onLag: expected one of skip, disconnect, found "drop""#),
        (#"{"version": 3, "grants": [{"uid": 65534, "allow": ["ping"]}"#, "at byte 59 in grants: unexpected end of input"),
    ])
    func reloadingABrokenFileKeepsTheOldPolicyAndSaysWhy(file: String, message: String) throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        try replacePolicy(daemon.policyPath, with: file)
        let connection = try daemon.connect()
        let error = #expect(throws: IpcError.self) { _ = try connection.reloadPolicy() }
        #expect("\(error.map(String.init(describing:)) ?? "")".contains(message), "got \(String(describing: error))")
        #expect("\(error.map(String.init(describing:)) ?? "")".contains(daemon.policyPath))
        #expect(try connection.status().policyVersion == 2)
        #expect(try SecondUser.exchange(daemon.socketPath, [#"{"type":"ping"}"#]) == [#"{"type":"ok"}"#, "OPEN"])
        let rejected = try auditFields(daemon.stateDirectory, event: "policy-reload")
        #expect(rejected.first?.string("result") == "rejected")
        #expect(rejected.first?.int("keptVersion") == 2)
        #expect(rejected.first?.string("error")?.contains(daemon.policyPath) == true)
    }

    @Test func aPolicyFileWritableByOthersIsRefusedAtReload() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"uid": 65534, "allow": ["*"]}"#))
        chmod(daemon.policyPath, 0o666)
        let error = #expect(throws: IpcError.self) { _ = try daemon.connect().reloadPolicy() }
        #expect(error.map(String.init(describing:))?.contains("is writable by group or others (mode 0666), who could change it; run 'chmod go-w \(daemon.policyPath)'") == true, "got \(String(describing: error))")
        #expect(try daemon.connect().status().policyVersion == 2)
    }

    @Test func sighupReloadsThePolicyAndARejectedOneIsLoggedAndRecorded() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"uid": 65534, "allow": ["ping", "status"]}"#))
        kill(daemon.pid, SIGHUP)
        _ = try daemon.waitForStatus { $0.policyVersion == 3 }
        #expect(try SecondUser.exchange(daemon.socketPath, [#"{"type":"status"}"#]).first?.hasPrefix(#"{"type":"ok""#) == true)

        try replacePolicy(daemon.policyPath, with: #"{"version": 4, "grants": [{"uid": 65534, "allow": ["fly"]}]}"#)
        kill(daemon.pid, SIGHUP)
        try waitUntil("the rejection in the daemon's log") { daemon.log.contains("policy reload rejected, previous policy (version 3) stays in force") }
        #expect(daemon.log.contains(#"unknown verb "fly""#))
        #expect(try daemon.connect().status().policyVersion == 3)
        let reloads = try auditFields(daemon.stateDirectory, event: "policy-reload")
        #expect(reloads.map { $0.string("result") } == ["applied", "rejected"])
        #expect(reloads.allSatisfy { $0.string("trigger") == "SIGHUP" })
    }

    @Test func theFrameLimitFromAReloadedPolicyAppliesToNewConnections() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        let frame = #"{"type":"ping","pad":""# + String(repeating: "a", count: 200) + #""}"#
        #expect(try SecondUser.exchange(daemon.socketPath, [frame]) == [#"{"type":"ok"}"#, "OPEN"])
        let before = try RawClient(path: daemon.socketPath) // opened under the old limit
        try replacePolicy(daemon.policyPath, with: Self.policy(
            version: 3, grants: #"{"uid": 65534, "allow": ["ping"]}"#, limits: #"{"maxFrameBytes": 128}"#))
        #expect(try daemon.connect().reloadPolicy() == 3)
        let after = try SecondUser.exchange(daemon.socketPath, [frame])
        #expect(after.first?.contains("exceeds the 128-byte limit") == true, "got \(after)")
        #expect(after.last == "EOF")
        try before.write(frame + "\n")
        #expect(before.readLines(1) == [#"{"type":"ok"}"#])
    }

    @Test func thePerUidConnectionCapFromAReloadedPolicyRefusesTheExtraConnection() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        try replacePolicy(daemon.policyPath, with: Self.policy(
            version: 3, grants: #"{"uid": 65534, "allow": ["ping"]}"#, limits: #"{"maxConnectionsPerUid": 2}"#))
        #expect(try daemon.connect().reloadPolicy() == 3)
        let first = try SecondUser.start(daemon.socketPath, [#"{"type":"ping"}"#, "@hold=4"])
        let second = try SecondUser.start(daemon.socketPath, [#"{"type":"ping"}"#, "@hold=4"])
        _ = try daemon.waitForStatus { $0.connections >= 3 }
        let third = try SecondUser.exchange(daemon.socketPath, [#"{"type":"ping"}"#])
        #expect(third.first?.contains("too many connections for uid 65534 (limit 2)") == true, "got \(third)")
        #expect(third.last == "EOF")
        #expect(SecondUser.output(of: first).first == #"{"type":"ok"}"#)
        #expect(SecondUser.output(of: second).first == #"{"type":"ok"}"#)
        let refused = try waitForAuditRecord(daemon.stateDirectory, event: "connection-refused")
        #expect(refused.first?.string("reason")?.contains("per-uid connection cap") == true)
        try daemon.connect().ping()
    }

    // MARK: - Rights end when the policy says so

    /// A reload that keeps `ping` but takes `subscribe` away ends the
    /// subscription there and then, with an error saying why; the
    /// connection keeps the verbs it still has.
    @Test func aReloadThatTakesSubscribeAwayEndsTheSubscriptionAndKeepsTheConnection() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping", "subscribe"]}"#))
        let watcher = try SecondUser.start(daemon.socketPath, [#"{"type":"subscribe"}"#, "@hold=3", #"{"type":"ping"}"#])
        _ = try daemon.waitForStatus { $0.subscribers == 1 }
        let root = try daemon.connect()
        _ = try root.publish(AlertInput(severity: .info, source: "before", message: "seen"))
        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        #expect(try root.reloadPolicy() == 3)
        _ = try daemon.waitForStatus { $0.subscribers == 0 }
        _ = try root.publish(AlertInput(severity: .info, source: "after", message: "not seen"))
        let replies = SecondUser.output(of: watcher)
        #expect(replies.count == 5, "got \(replies)")
        guard replies.count == 5 else { return }
        #expect(replies[0].hasPrefix(#"{"type":"ok","subscribed":true"#))
        #expect(replies[1].contains(#""source":"before""#))
        #expect(replies[2] == #"{"type":"err","message":"subscription ended: policy version 3 no longer grants uid 65534 \"subscribe\" (allowed: ping)"}"#)
        #expect(replies[3] == #"{"type":"ok"}"#)
        #expect(replies[4] == "OPEN")
        let ended = try waitForAuditRecord(daemon.stateDirectory, event: "subscription-ended")
        #expect(ended.first?.int("uid") == 65534 && ended.first?.int("policyVersion") == 3)
    }

    /// Offloaded requests of a connection run one after another, and each
    /// is checked against the policy in force when it runs: an audit
    /// pipelined behind a reload that revokes `audit` is refused.
    @Test func anOffloadedRequestQueuedBehindAReloadIsCheckedAgainstTheNewPolicy() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping", "reloadPolicy", "audit"]}"#))
        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"uid": 65534, "allow": ["ping", "reloadPolicy"]}"#))
        // Both in one write: the audit is read (and authorized) before the
        // reload has run.
        let replies = try SecondUser.exchange(daemon.socketPath, [#"{"type":"reloadPolicy"}"# + "\n" + #"{"type":"audit"}"#])
        #expect(replies.count == 3, "got \(replies)")
        #expect(replies.first == #"{"type":"ok","policyVersion":3}"#)
        #expect(replies.dropFirst().first?.contains(#"not authorized: uid 65534 may no longer use \"audit\": policy version 3 was loaded before this request ran (allowed now: ping, reloadPolicy)"#) == true, "got \(replies)")
    }

    @Test func auditWithFixNeedsItsOwnGrant() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["audit"]}"#))
        chmod(daemon.stateDirectory, 0o750)
        let denied = try SecondUser.exchange(daemon.socketPath, [#"{"type":"audit","fix":true}"#, #"{"type":"audit"}"#])
        #expect(denied.first == #"{"type":"err","message":"not authorized: uid 65534 may not use \"audit\" with \"fix\" (policy verb \"auditFix\") (allowed: audit)"}"#, "got \(denied)")
        #expect(denied.dropFirst().first?.hasPrefix(#"{"type":"ok","startedAt""#) == true)
        #expect(fileMode(daemon.stateDirectory) == 0o750, "a read-only peer changed the host")
        try waitUntil("the denial on record") { try auditFields(daemon.stateDirectory, event: "denied").contains { $0.string("verb") == "auditFix" } }

        try replacePolicy(daemon.policyPath, with: Self.policy(version: 3, grants: #"{"uid": 65534, "allow": ["audit", "auditFix"]}"#))
        #expect(try daemon.connect().reloadPolicy() == 3)
        let fixed = try SecondUser.exchange(daemon.socketPath, [#"{"type":"audit","fix":true}"#])
        #expect(fixed.first?.contains(#""fixed":true"#) == true, "got \(fixed)")
        #expect(fileMode(daemon.stateDirectory) == 0o700)
    }

    // MARK: - Connection slots

    /// One uid holding every slot it can get leaves the reserved ones: root
    /// still gets in to kill.
    @Test func oneUidHoldingEverySlotItCanGetCannotLockRootOut() throws {
        let daemon = try DaemonProcess(
            extraArguments: ["--max-connections", "20"], policy: Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#),
            socketMode: "0666", reachableByOtherUsers: true)
        let held = try SecondUser.HeldConnections(socket: daemon.socketPath, count: 20)
        defer { held.release() }
        // 20 slots, 10 of them reserved (at most half): 10 for everyone else.
        #expect(held.answered == 10, "answered \(held.answered)")
        #expect(held.refused == 10)
        #expect(held.firstRefusal == #"{"type":"err","message":"server is at its connection limit (10; the other 10 are reserved); try again later"}"#, "got \(held.firstRefusal)")
        let root = try daemon.connect()
        #expect(try root.kill(reason: "locked out?") >= 1)
        #expect(try root.status().killed)
    }

    @Test func withoutAPolicyCapAUidHoldsAt1024Connections() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        let held = try SecondUser.HeldConnections(socket: daemon.socketPath, count: 1030)
        defer { held.release() }
        #expect(held.answered == 1024)
        #expect(held.refused == 6)
        #expect(held.firstRefusal == #"{"type":"err","message":"too many connections for uid 65534 (limit 1024); close some and retry"}"#, "got \(held.firstRefusal)")
        try daemon.connect().ping()
    }

    // MARK: - What status shows

    /// Peers that are not operators see the switch's state but not who
    /// tripped it and why, nor the daemon's pid.
    @Test func statusShowsKillDetailsAndThePidOnlyToOperators() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["status"]}, {"uid": 12345, "allow": ["*"]}"#))
        _ = try daemon.connect().kill(reason: "agent exfiltrated keys")
        let reader = try SecondUser.exchange(daemon.socketPath, [#"{"type":"status"}"#])
        let status = try FastJSONDecoder().decode(MonitorStatus.self, from: Array(try #require(reader.first).utf8))
        #expect(status.killed)
        #expect(status.killReason == nil)
        #expect(status.pid == 0)
        let operatorView = try daemon.connect().status()
        #expect(operatorView.killReason == "agent exfiltrated keys")
        #expect(operatorView.pid == daemon.pid)
    }

    // MARK: - What peers can make the daemon write

    /// Audit runs are cheap to ask for and each used to be a record: a peer
    /// granted `audit` gets at most ten records a minute, the rest counted.
    @Test func auditRunsOfAPeerAreRecordedAtMostTenAMinuteAndTheRestSummarized() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["audit"]}"#))
        let burst = Array(repeating: #"{"type":"audit"}"#, count: 100).joined(separator: "\n")
        let replies = try SecondUser.exchange(daemon.socketPath, [burst])
        #expect(replies.filter { $0.hasPrefix(#"{"type":"ok","startedAt""#) }.count == 100)
        try daemon.stop()
        #expect(try auditFields(daemon.stateDirectory, event: "audit-run").count == 10)
        let summary = try auditFields(daemon.stateDirectory, event: "audit-run-suppressed")
        #expect(summary.count == 1)
        #expect(summary.first?.int("uid") == 65534)
        #expect(summary.first?.int("count") == 90)
        #expect(daemon.log.split(separator: "\n").filter { $0.hasSuffix("] audit run") }.count == 10)
        #expect(daemon.log.contains("90 more audit runs from uid 65534 were not logged one by one (at most 10 per uid per 60 s)"))
    }

    /// Denials cost the daemon a log line each no more: the same ten a
    /// minute as the records, then one summary.
    @Test func deniedRequestsOfAPeerLogAtMostTenLinesAMinute() throws {
        let daemon = try daemon(Self.policy(grants: #"{"uid": 65534, "allow": ["ping"]}"#))
        let burst = Array(repeating: #"{"type":"kill"}"#, count: 2000).joined(separator: "\n")
        let replies = try SecondUser.exchange(daemon.socketPath, [burst])
        #expect(replies.filter { $0.contains(#"may not use \"kill\""#) }.count == 2000)
        try daemon.stop()
        #expect(daemon.log.split(separator: "\n").filter { $0.hasSuffix("] denied request") }.count == 10)
        #expect(daemon.log.contains("1990 more denied requests or refused connections from uid 65534 were not logged one by one"))
        #expect(try auditFields(daemon.stateDirectory, event: "denied").count == 10)
        #expect(try auditFields(daemon.stateDirectory, event: "denied-suppressed").first?.int("count") == 1990)
    }

    /// Subscribers that stop reading are cut off; each used to cost a
    /// record and two log lines.
    @Test func subscribersCutOffAreRecordedAndLoggedAtMostTenAMinutePerUid() throws {
        let daemon = try DaemonProcess(
            extraArguments: ["--stuck-send-timeout", "0.5"],
            policy: Self.policy(grants: #"{"uid": 65534, "allow": ["subscribe"]}"#), socketMode: "0666", reachableByOtherUsers: true)
        let sleepers = try (0..<15).map { _ in try SecondUser.start(daemon.socketPath, [#"{"type":"subscribe"}"#, "@hold=30"]) }
        defer { for (process, _) in sleepers { killAndWait(process) } }
        _ = try daemon.waitForStatus { $0.subscribers == 15 }
        let publisher = try daemon.connect()
        let padding = String(repeating: "x", count: 60_000)
        for _ in 0..<20 {
            _ = try publisher.publish(AlertInput(severity: .info, source: "fill", message: padding))
        }
        _ = try daemon.waitForStatus(timeout: 20) { ($0.slowDisconnects ?? 0) == 15 }
        try daemon.stop()
        #expect(try auditFields(daemon.stateDirectory, event: "subscriber-cut-off").count == 10)
        #expect(try auditFields(daemon.stateDirectory, event: "subscriber-cut-off-suppressed").first?.int("count") == 5)
        #expect(daemon.log.components(separatedBy: "closing slow consumer").count - 1 == 10)
        #expect(daemon.log.contains("5 more slow-consumer disconnects for uid 65534 were not logged one by one"))
    }
}
