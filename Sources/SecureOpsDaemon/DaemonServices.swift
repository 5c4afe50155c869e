import SecureOpsSystem
import Glibc
import Logging
import Synchronization
import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsForwarder

/// The daemon's shared state: what handlers on the loop thread and work on
/// the Dispatch pool both reach. Everything here is thread-safe.
public final class DaemonServices: Sendable {
    public let options: DaemonOptions
    public let logger: Logger
    public let killSwitch: KillSwitch
    let onKill: OnKillRunner
    public let trail: AuditTrail
    public let daemonUID: UInt32
    public let startedAt: UInt64
    public let version = "0.1.0"
    private let policyInForce: PolicyInForce
    /// Serializes reloads (SIGHUP and requests may race); held across the
    /// file read on a Dispatch worker, never on the loop thread.
    private let reloadLock = Locked<Void>(())
    private let engineHandle = Locked<Engine<SecureOpsHandler>?>(nil)
    private let forwarderHandle = Locked<JetStreamForwarder?>(nil)

    init(options: DaemonOptions, policy: Policy, logger: Logger, auditLog: AuditLog, killSwitch: KillSwitch) {
        self.options = options
        self.logger = logger
        daemonUID = geteuid()
        startedAt = SystemClock.monotonicNanoseconds()
        let policyInForce = PolicyInForce(policy)
        self.policyInForce = policyInForce
        let trail = AuditTrail(log: auditLog, logger: logger, daemonUID: daemonUID)
        self.trail = trail
        self.killSwitch = killSwitch
        onKill = OnKillRunner(policy: { policyInForce.policy }, daemonUID: daemonUID, logger: logger, trail: trail)
    }

    func attach(_ engine: Engine<SecureOpsHandler>) {
        engineHandle.withLock { $0 = engine }
    }

    var engine: Engine<SecureOpsHandler>? {
        engineHandle.withLock { $0 }
    }

    func attach(_ forwarder: JetStreamForwarder) {
        forwarderHandle.withLock { $0 = forwarder }
    }

    var forwarder: JetStreamForwarder? {
        forwarderHandle.withLock { $0 }
    }

    /// Alerts left the journal before they were forwarded: one critical
    /// alert per range, never silent.
    func alertsDroppedBeforeForwarding(_ gap: ForwardingGap) {
        trail.forwardingGap(first: gap.first, last: gap.last)
        publishOwnAlert(.critical, message: "\(gap.count) alerts (sequences \(gap.first)...\(gap.last)) left the journal before they were forwarded to NATS (retention, or a failed write); they are not in the stream")
    }

    public var policy: Policy {
        policyInForce.policy
    }

    /// The policy with its generation, read together.
    var policyAndGeneration: (policy: Policy, generation: Int) {
        policyInForce.withGeneration
    }

    /// Re-reads the policy file and swaps it in atomically; on any error the
    /// old policy stays in force, the error says why, and the attempt is
    /// recorded in the audit log either way.
    public func reloadPolicy(trigger: AuditTrail.ReloadTrigger) throws(PolicyLoader.Failure) -> Policy {
        try reloadLock.withLock { _ throws(PolicyLoader.Failure) -> Policy in
            let previous = policy
            guard let path = options.policyPath else {
                logger.info("reloadPolicy: no --policy file configured; the built-in policy stays in force")
                trail.policyUnchanged(trigger: trigger, policy: previous)
                return previous
            }
            let fresh: Policy
            do throws(PolicyLoader.Failure) {
                fresh = try PolicyLoader.load(path: path, daemonUID: daemonUID)
            } catch {
                logger.error("policy reload rejected, previous policy (version \(previous.version)) stays in force: \(error)")
                trail.policyRejected(trigger: trigger, kept: previous, error: error.description)
                throw error
            }
            policyInForce.replace(with: fresh)
            engine?.updateLimits(engineLimits(for: fresh))
            // Connections the new policy no longer admits are closed now,
            // subscribers included, not at their next request.
            engine?.reviewConnections()
            logger.notice("policy reloaded", metadata: ["version": "\(fresh.version)", "grants": "\(fresh.grants.count)", "path": "\(path)"])
            trail.policyApplied(trigger: trigger, previous: previous, new: fresh)
            return fresh
        }
    }

    /// The `source` of the daemon's own alerts (the kill switch's): refused
    /// in `publish`, however it is spelled.
    static let reservedSource = "secureopsd"

    /// Whether `source` reads as the daemon's own: the same letters in any
    /// ASCII case, with any whitespace, control or format characters (a
    /// zero-width space, say) around or between them. On the publish path:
    /// no allocation, and most sources fail at their first letters. (A
    /// look-alike from another script still gets through; `origin` tells
    /// who published it either way.)
    static func isReservedSource(_ source: String) -> Bool {
        let reserved = reservedSource.utf8
        var next = reserved.startIndex
        for scalar in source.unicodeScalars {
            if scalar.isASCII {
                // Whitespace and control characters are skipped, like below.
                if scalar.value <= 0x20 || scalar.value == 0x7F { continue }
            } else {
                let properties = scalar.properties
                if properties.isWhitespace || properties.generalCategory == .control || properties.generalCategory == .format { continue }
                return false
            }
            guard next != reserved.endIndex else { return false }
            var byte = UInt8(scalar.value)
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte += 32 }
            guard byte == reserved[next] else { return false }
            next = reserved.index(after: next)
        }
        return next == reserved.endIndex
    }

    /// Whether `connection` may still use `verb` under the policy in force
    /// now (for work that was authorized when read and runs later).
    func recheck(_ verb: PolicyVerb, for connection: ConnectionInfo) throws(IpcError) {
        let peer = connection.kernelPeer
        guard !peer.isPrivileged(daemonUID: daemonUID) else { return }
        let policy = self.policy
        let verbs = policy.allowedVerbs(for: peer, groups: connection.groups, daemonUID: daemonUID)
        guard verbs.contains(verb) else {
            trail.denied(peer: peer, verb: verb)
            throw .unauthorized("uid \(peer.uid) may no longer use \(verb.requestDescription): policy version \(policy.version) was loaded before this request ran (allowed now: \(verbs.isEmpty ? "nothing" : verbs.description))")
        }
    }

    /// Broadcasts one of the daemon's own alerts (source `secureopsd`,
    /// origin the daemon's uid and pid). Returns its sequence, 0 when the
    /// engine has stopped.
    @discardableResult
    func publishOwnAlert(_ severity: Severity, message: String, details: JSONValue? = nil) -> UInt64 {
        guard let engine else { return 0 }
        let alert = AlertInput(severity: severity, source: Self.reservedSource, message: message, details: details.map { RawJSON($0) })
        let origin = AlertOrigin(uid: daemonUID, pid: getpid())
        return (try? engine.publish { sequence, milliseconds, writer in
            AlertFrame.write(sequence: sequence, timestampMilliseconds: milliseconds, alert: alert, origin: origin, into: &writer)
        }) ?? 0
    }

    /// The journal's writes started failing or work again: one alert each
    /// way, so whoever watches alerts learns that they are not on disk.
    func journalHealthChanged(_ health: JournalHealth) {
        switch health {
        case .failing(let why):
            trail.journalFailing(error: why)
            publishOwnAlert(.critical, message: "journal writes are failing: alerts still reach subscribers but are not on disk (\(why))")
        case .healthy:
            trail.journalRecovered()
            publishOwnAlert(.info, message: "journal writes work again")
        }
    }

    /// The engine limits a policy implies.
    func engineLimits(for policy: Policy) -> EngineLimits {
        var limits = EngineLimits()
        limits.maxFrameBytes = policy.limits.maxFrameBytes
        limits.retainedFrames = policy.limits.retainedAlerts
        limits.onLag = policy.limits.onLag
        limits.retainedBytes = options.engine.retainedBytes
        limits.maxBytesPerSend = options.engine.maxBytesPerSend
        limits.maxConnections = options.engine.maxConnections
        limits.stuckSendTimeout = .milliseconds(Int64(options.engine.stuckSendTimeoutSeconds * 1000))
        limits.frameTimeout = .milliseconds(Int64(options.engine.frameTimeoutSeconds * 1000))
        return limits
    }

    var uptimeSeconds: Double {
        Double(SystemClock.monotonicNanoseconds() - startedAt) / 1e9
    }
}
