import Dispatch
import Glibc
import Synchronization
import SecureOpsAuditLog
import SecureOpsEngine

/// What the daemon writes to its signed audit log, one method per event,
/// so every record of a kind has the same fields.
///
/// Security-critical events (start, stop, kill, policy reloads, audit
/// fixes, the onKill outcome) are written durably before the caller goes
/// on; everything else is enqueued. Methods marked "loop thread" never
/// block on the disk.
public final class AuditTrail: Sendable {
    public let log: AuditLog
    let denials: DenialLimiter
    private let stopped = Atomic<Bool>(false)
    private let expiryQueue = DispatchQueue(label: "secureops.audit-trail.expiry")

    /// Denied requests recorded per uid per minute; the rest are counted.
    public static let deniedRecordsPerMinute = 10

    init(log: AuditLog, deniedPerWindow: Int = AuditTrail.deniedRecordsPerMinute, windowSeconds: Double = 60) {
        self.log = log
        denials = DenialLimiter(perWindow: deniedPerWindow, windowSeconds: windowSeconds)
        scheduleExpiry(after: windowSeconds)
    }

    public var health: AuditLog.Health { log.health }

    // MARK: - Lifecycle

    func daemonStarted(pid: Int32, version: String, policy: Policy, options: DaemonOptions, killSwitch: KillSwitch.State) {
        log.recordDurably("start", [
            "pid": .number(JSONNumber(Int(pid))), "uid": .number(JSONNumber(Int(getuid()))), "version": .string(version),
            "socket": .string(options.socketPath), "policyVersion": .number(JSONNumber(policy.version)),
            "policyPath": policy.path.map { .string($0) } ?? .null, "killSwitchTripped": .bool(killSwitch.killed),
            "stateDir": .string(options.stateDirectory),
        ])
    }

    func daemonFailedToStart(error: String) {
        log.close(finalEvent: "start-failed", fields: ["pid": .number(JSONNumber(Int(getpid()))), "error": .string(AuditText.clip(error))])
    }

    /// Writes the pending denial summaries and the `stop` record, then
    /// closes the log.
    func daemonStopped(signal: Int32, uptimeSeconds: Double) {
        stopped.store(true, ordering: .relaxed)
        for (uid, suppressed) in denials.drain() { recordSuppressed(uid: uid, count: suppressed) }
        log.close(finalEvent: "stop", fields: [
            "pid": .number(JSONNumber(Int(getpid()))), "signal": .number(JSONNumber(Int(signal))),
            "uptimeSecs": .number(JSONNumber((uptimeSeconds * 1000).rounded() / 1000) ?? JSONNumber(0)),
        ])
    }

    // MARK: - Authorization (loop thread)

    /// A request the policy does not allow this peer (rate-limited).
    func denied(peer: PeerCred, verb: PolicyVerb) {
        guard admitDenialRecord(uid: peer.uid) else { return }
        log.record("denied", peerFields(peer) + ["verb": .string(verb.rawValue)])
    }

    /// A connection refused before its first request (rate-limited).
    func connectionRefused(peer: PeerCred, reason: String) {
        guard admitDenialRecord(uid: peer.uid) else { return }
        log.record("connection-refused", peerFields(peer) + ["reason": .string(AuditText.clip(reason))])
    }

    /// A subscription a reload took `subscribe` away from.
    func subscriptionEnded(peer: PeerCred, policyVersion: Int) {
        log.record("subscription-ended", peerFields(peer) + [
            "policyVersion": .number(JSONNumber(policyVersion)), "reason": "the policy no longer grants subscribe",
        ])
    }

    /// A subscriber the engine disconnected for lag or a stuck send.
    func subscriberCutOff(peer: PeerCred, reason: CloseReason) {
        let why = switch reason {
        case .lagged: "lagged"
        case .stuckSend: "slow"
        default: "\(reason)"
        }
        log.record("subscriber-cut-off", peerFields(peer) + ["reason": .string(why), "detail": .string(reason.description)])
    }

    private func admitDenialRecord(uid: UInt32) -> Bool {
        switch denials.decide(uid: uid, now: DaemonServices.monotonicNanoseconds()) {
        case .suppress:
            return false
        case .record(let suppressedBefore):
            if suppressedBefore > 0 { recordSuppressed(uid: uid, count: suppressedBefore) }
            return true
        }
    }

    private func recordSuppressed(uid: UInt32, count: Int) {
        log.record("denied-suppressed", [
            "uid": .number(JSONNumber(Int(uid))), "count": .number(JSONNumber(count)),
            "limit": .string("\(denials.perWindow) records per uid per \(denials.windowNanoseconds / 1_000_000_000) s"),
        ])
    }

    /// Summaries of windows that ended without another denial to carry them.
    private func scheduleExpiry(after seconds: Double) {
        expiryQueue.asyncAfter(deadline: .now() + seconds) { [weak self] in
            guard let self, !self.stopped.load(ordering: .relaxed) else { return }
            for (uid, suppressed) in self.denials.expire(now: DaemonServices.monotonicNanoseconds()) {
                self.recordSuppressed(uid: uid, count: suppressed)
            }
            self.scheduleExpiry(after: seconds)
        }
    }

    // MARK: - Control actions (Dispatch pool)

    @discardableResult
    func killed(reason: String?, peer: PeerCred, alertSequence: UInt64, persisted: Bool, alreadyTripped: Bool) -> Bool {
        log.recordDurably("kill", peerFields(peer) + [
            "reason": reason.map { .string(AuditText.clip($0)) } ?? .null,
            "alertSequence": .number(JSONNumber(alertSequence)), "persisted": .bool(persisted),
            "alreadyTripped": .bool(alreadyTripped),
        ])
    }

    func onKillFinished(command: [String], outcome: CommandRunner.Outcome, milliseconds: Int, timeoutSecs: Double, coalescedKills: Int) {
        var fields: JSONObject = [
            "command": .array(command.map { .string(AuditText.clip($0, limit: 1024)) }),
            "outcome": .string(AuditText.clip(outcome.description)), "durationMs": .number(JSONNumber(milliseconds)),
            "timeoutSecs": .number(JSONNumber(timeoutSecs) ?? JSONNumber(0)),
            "coalescedKills": .number(JSONNumber(coalescedKills)),
        ]
        switch outcome {
        case .exited(let status): fields.members.append(.init(key: "exitStatus", value: .number(JSONNumber(Int(status)))))
        case .signalled(let signal): fields.members.append(.init(key: "signal", value: .number(JSONNumber(Int(signal)))))
        case .timedOut: fields.members.append(.init(key: "timedOut", value: .bool(true)))
        case .failedToStart: break
        }
        log.recordDurably("onkill-finished", fields)
    }

    /// How a reload was asked for.
    public enum ReloadTrigger: Sendable {
        case request(PeerCred)
        case signal
    }

    func policyApplied(trigger: ReloadTrigger, previous: Policy, new: Policy) {
        log.recordDurably("policy-reload", triggerFields(trigger) + [
            "result": "applied", "path": new.path.map { .string($0) } ?? .null,
            "previousVersion": .number(JSONNumber(previous.version)), "version": .number(JSONNumber(new.version)),
            "grants": .number(JSONNumber(new.grants.count)),
        ])
    }

    func policyRejected(trigger: ReloadTrigger, kept: Policy, error: String) {
        log.recordDurably("policy-reload", triggerFields(trigger) + [
            "result": "rejected", "error": .string(AuditText.clip(error)),
            "keptVersion": .number(JSONNumber(kept.version)),
        ])
    }

    func policyUnchanged(trigger: ReloadTrigger, policy: Policy) {
        log.recordDurably("policy-reload", triggerFields(trigger) + [
            "result": "unchanged", "reason": "no --policy file is configured; the built-in policy stays in force",
            "version": .number(JSONNumber(policy.version)),
        ])
    }

    func auditRun(_ report: AuditReport, peer: PeerCred) {
        let fixed = report.checks.filter(\.fixed).map { JSONValue.string($0.id) }
        let failing = report.checks.filter { $0.status == .fail || $0.status == .error }.map { JSONValue.string($0.id) }
        let fields = peerFields(peer) + [
            "deep": .bool(report.deep), "fix": .bool(report.fix),
            "pass": .number(JSONNumber(report.summary.pass)), "warn": .number(JSONNumber(report.summary.warn)),
            "fail": .number(JSONNumber(report.summary.fail)), "error": .number(JSONNumber(report.summary.error)),
            "skipped": .number(JSONNumber(report.summary.skipped)), "fixed": .array(fixed), "failing": .array(failing),
        ]
        // A run that changed the host is as critical as a policy change.
        if fixed.isEmpty { log.record("audit-run", fields) } else { log.recordDurably("audit-run", fields) }
    }

    // MARK: - Fields

    private func peerFields(_ peer: PeerCred) -> JSONObject {
        ["uid": .number(JSONNumber(Int(peer.uid))), "gid": .number(JSONNumber(Int(peer.gid))), "pid": .number(JSONNumber(Int(peer.pid)))]
    }

    private func triggerFields(_ trigger: ReloadTrigger) -> JSONObject {
        switch trigger {
        case .request(let peer): ["trigger": "reloadPolicy"] + peerFields(peer)
        case .signal: ["trigger": "SIGHUP"]
        }
    }
}

extension JSONObject {
    static func + (lhs: JSONObject, rhs: JSONObject) -> JSONObject {
        JSONObject(lhs.members + rhs.members)
    }
}
