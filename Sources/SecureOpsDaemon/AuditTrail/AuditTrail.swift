import SecureOpsSystem
import Dispatch
import Glibc
import Logging
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
    let logger: Logger
    /// Events any peer can cause as often as it likes (denials, audit runs,
    /// cut-off subscribers): recorded and logged at most
    /// `peerEventsPerMinute` per kind per uid; the rest are counted and
    /// summarised once the minute is over.
    private let peerEvents: Locked<WindowedRateLimiter<PeerEventKey>>
    private let stopped = Atomic<Bool>(false)
    private let expiryQueue = DispatchQueue(label: "secureops.audit-trail.expiry")
    private let daemonUID: UInt32

    public static let peerEventsPerMinute = 10

    /// What a peer can cause again and again, each with its own budget.
    enum PeerEvent: String, Sendable, Hashable {
        /// Denied requests and refused connections.
        case denied
        case auditRun = "audit-run"
        case subscriberCutOff = "subscriber-cut-off"

        /// How the summary names them.
        var plural: String {
            switch self {
            case .denied: "denied requests or refused connections"
            case .auditRun: "audit runs"
            case .subscriberCutOff: "cut-off subscribers"
            }
        }
    }

    struct PeerEventKey: Hashable, Sendable {
        var event: PeerEvent
        var uid: UInt32
    }

    init(log: AuditLog, logger: Logger, daemonUID: UInt32, perWindow: Int = AuditTrail.peerEventsPerMinute, windowSeconds: Double = 60) {
        self.log = log
        self.logger = logger
        self.daemonUID = daemonUID
        peerEvents = Locked(WindowedRateLimiter(perWindow: perWindow, windowSeconds: windowSeconds))
        scheduleExpiry(after: windowSeconds)
    }

    public var health: AuditLog.Health { log.health }

    // MARK: - Lifecycle

    func daemonStarted(pid: Int32, version: String, policy: Policy, options: DaemonOptions, killSwitch: KillSwitch.State) {
        log.recordDurably("start", [
            "pid": .number(JSONNumber(Int(pid))), "uid": .number(JSONNumber(Int(daemonUID))), "version": .string(version),
            "socket": .string(options.socketPath), "policyVersion": .number(JSONNumber(policy.version)),
            "policyPath": policy.path.map { .string($0) } ?? .null, "killSwitchTripped": .bool(killSwitch.killed),
            "stateDir": .string(options.stateDirectory),
        ])
    }

    /// What opening the journal found, when it cut or moved anything.
    func journalRecovered(_ recovery: JournalRecovery) {
        if recovery.tornTailBytesCut > 0 {
            log.recordDurably("journal-torn-tail", [
                "bytesCut": .number(JSONNumber(recovery.tornTailBytesCut)),
                "reason": .string(AuditText.clip(recovery.tornTailReason ?? "")),
            ])
        }
        if let damage = recovery.damage {
            log.recordDurably("journal-damaged", [
                "segment": .string(damage.segment), "offset": .number(JSONNumber(damage.offset)),
                "reason": .string(AuditText.clip(damage.reason)),
                "lastIntactSequence": damage.lastIntactSequence.map { .number(JSONNumber(Int($0))) } ?? .null,
                "movedTo": .string(damage.movedAsideTo),
            ])
        }
    }

    func forwardingGap(first: UInt64, last: UInt64) {
        logger.critical("alerts left the journal before they were forwarded", metadata: ["first": "\(first)", "last": "\(last)"])
        log.recordDurably("forwarding-gap", ["first": .number(JSONNumber(Int(first))), "last": .number(JSONNumber(Int(last)))])
    }

    func journalFailing(error: String) {
        logger.error("journal writes are failing", metadata: ["error": "\(error)"])
        log.record("journal-failing", ["error": .string(AuditText.clip(error))])
    }

    func journalRecovered() {
        log.record("journal-recovered", [:])
    }

    func daemonFailedToStart(error: String) {
        log.close(finalEvent: "start-failed", fields: ["pid": .number(JSONNumber(Int(getpid()))), "error": .string(AuditText.clip(error))])
    }

    /// Writes the pending summaries and the `stop` record, then closes the log.
    func daemonStopped(signal: Int32, uptimeSeconds: Double) {
        stopped.store(true, ordering: .relaxed)
        for (key, suppressed) in peerEvents.withLock({ $0.drain() }) { summarize(key, count: suppressed) }
        log.close(finalEvent: "stop", fields: [
            "pid": .number(JSONNumber(Int(getpid()))), "signal": .number(JSONNumber(Int(signal))),
            "uptimeSecs": .number(JSONNumber((uptimeSeconds * 1000).rounded() / 1000) ?? JSONNumber(0)),
        ])
    }

    // MARK: - What peers cause (loop thread)

    /// A request the policy does not allow this peer (rate-limited).
    func denied(peer: PeerCred, verb: PolicyVerb) {
        guard admit(.denied, uid: peer.uid) else { return }
        logger.notice("denied request", metadata: ["peer": "\(peer)", "verb": "\(verb.rawValue)"])
        log.record("denied", peerFields(peer) + ["verb": .string(verb.rawValue)])
    }

    /// A connection refused before its first request (rate-limited).
    func connectionRefused(peer: PeerCred, reason: String) {
        guard admit(.denied, uid: peer.uid) else { return }
        logger.notice("refused connection", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
        log.record("connection-refused", peerFields(peer) + ["reason": .string(AuditText.clip(reason))])
    }

    /// A subscription a reload took `subscribe` away from (as many as there
    /// are subscribers: an operator's reload causes them, not the peer).
    func subscriptionEnded(peer: PeerCred, policyVersion: Int) {
        log.record("subscription-ended", peerFields(peer) + [
            "policyVersion": .number(JSONNumber(policyVersion)), "reason": "the policy no longer grants subscribe",
        ])
    }

    /// A subscriber the engine disconnected for lag or a stuck send
    /// (rate-limited per uid).
    func subscriberCutOff(peer: PeerCred, reason: CloseReason) {
        guard admit(.subscriberCutOff, uid: peer.uid) else { return }
        let why = switch reason {
        case .lagged: "lagged"
        case .stuckSend: "slow"
        default: "\(reason)"
        }
        logger.warning("subscriber cut off", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
        log.record("subscriber-cut-off", peerFields(peer) + ["reason": .string(why), "detail": .string(reason.description)])
    }

    /// Whether an event of `uid` is recorded and logged one by one; first
    /// the summary of the previous window, if it suppressed any.
    private func admit(_ event: PeerEvent, uid: UInt32) -> Bool {
        let key = PeerEventKey(event: event, uid: uid)
        switch peerEvents.withLock({ $0.decide(key, now: SystemClock.monotonicNanoseconds()) }) {
        case .suppress:
            return false
        case .allow(let suppressedBefore):
            if suppressedBefore > 0 { summarize(key, count: suppressedBefore) }
            return true
        }
    }

    private func summarize(_ key: PeerEventKey, count: Int) {
        let limit = peerEvents.withLock { $0.limitDescription }
        logger.notice("\(count) more \(key.event.plural) from uid \(key.uid) were not logged one by one (at most \(limit))")
        log.record("\(key.event.rawValue)-suppressed", [
            "uid": .number(JSONNumber(Int(key.uid))), "count": .number(JSONNumber(count)), "limit": .string(limit),
        ])
    }

    /// Summaries of windows that ended without another event to carry them.
    private func scheduleExpiry(after seconds: Double) {
        expiryQueue.asyncAfter(deadline: .now() + seconds) { [weak self] in
            guard let self, !self.stopped.load(ordering: .relaxed) else { return }
            let expired = self.peerEvents.withLock { $0.expire(now: SystemClock.monotonicNanoseconds()) }
            for (key, suppressed) in expired.sorted(by: { ($0.key.uid, $0.key.event.rawValue) < ($1.key.uid, $1.key.event.rawValue) }) {
                self.summarize(key, count: suppressed)
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

    /// An audit run: always recorded (fsync'd) when it changed the host or
    /// came from root or the daemon's uid; rate-limited per uid otherwise.
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
        if !fixed.isEmpty {
            log.recordDurably("audit-run", fields)
            return
        }
        guard peer.isPrivileged(daemonUID: daemonUID) || admit(.auditRun, uid: peer.uid) else { return }
        logger.info("audit run", metadata: [
            "peer": "\(peer)", "fixed": "\(report.checks.filter(\.fixed).map(\.id))",
            "pass": "\(report.summary.pass)", "warn": "\(report.summary.warn)",
            "fail": "\(report.summary.fail)", "error": "\(report.summary.error)",
            "deep": "\(report.deep)", "fix": "\(report.fix)",
        ])
        log.record("audit-run", fields)
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
