import Glibc
import Logging
import SecureOpsEngine

/// The SecureOps protocol (WIRE.md) on top of the engine.
///
/// Cheap requests (ping, status, publish, subscribe, alerts) are answered
/// inline on the loop thread; ones that touch the disk, crypto or child
/// processes (audit, kill, reloadPolicy) are offloaded to the Dispatch pool.
public final class SecureOpsHandler: RequestHandler {
    public typealias Request = IpcRequest

    let services: DaemonServices
    /// Verbs granted to unprivileged connections, cached per connection and
    /// recomputed after a policy reload.
    private var grants: [ConnectionID: CachedGrant] = [:]

    private struct CachedGrant {
        var verbs: VerbSet
        var generation: Int
    }

    init(services: DaemonServices) {
        self.services = services
    }

    // MARK: - Authorization

    /// Connections this handler refused, so `connectionClosed` can tell
    /// them from ones the engine refused (per-uid cap) for the audit log.
    private var refusedByPolicy: Set<ConnectionID> = []

    public func admit(_ connection: ConnectionInfo) -> Admission {
        let verbs = allowedVerbs(connection)
        guard verbs.isEmpty else { return .admit }
        let policy = services.policy
        refusedByPolicy.insert(connection.id)
        services.logger.notice("refused connection: peer allowed nothing", metadata: ["peer": "\(connection.peer)", "policyVersion": "\(policy.version)"])
        services.trail.connectionRefused(peer: connection.peer, reason: "policy version \(policy.version) grants this peer nothing")
        return .refuse(Self.grantedNothingMessage(connection.peer, policy: policy))
    }

    static func grantedNothingMessage(_ peer: PeerCred, policy: Policy) -> String {
        "not authorized: uid \(peer.uid) may not use this socket (policy version \(policy.version) grants it nothing); ask an administrator for a grant in \(policy.path ?? "the policy file")"
    }

    private func allowedVerbs(_ connection: ConnectionInfo) -> VerbSet {
        let peer = connection.peer
        if peer.isPrivileged(daemonUID: services.daemonUID) { return .all }
        let (policy, generation) = services.policyAndGeneration
        if let cached = grants[connection.id], cached.generation == generation { return cached.verbs }
        let verbs = policy.allowedVerbs(for: peer, groups: connection.groups, daemonUID: services.daemonUID)
        grants[connection.id] = CachedGrant(verbs: verbs, generation: generation)
        return verbs
    }

    public func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason) {
        grants[connection.id] = nil
        let refusedHere = refusedByPolicy.remove(connection.id) != nil
        switch reason {
        case .lagged, .stuckSend:
            services.logger.warning("subscriber cut off", metadata: ["peer": "\(connection.peer)", "reason": "\(reason)"])
            services.trail.subscriberCutOff(peer: connection.peer, reason: reason)
        case .refused:
            // Refused by the engine before `admit` ran: the per-uid cap.
            if !refusedHere {
                services.trail.connectionRefused(peer: connection.peer, reason: "per-uid connection cap (limits.maxConnectionsPerUid) reached")
            }
        default:
            break
        }
    }

    // MARK: - Requests

    public func handle(_ request: IpcRequest, context: RequestContext) throws -> Reply {
        // Root and the daemon's uid: no policy lookup, no copy of the
        // connection's details on the way.
        let verbs = context.peer.isPrivileged(daemonUID: services.daemonUID) ? VerbSet.all : allowedVerbs(context.connection)
        guard verbs.contains(request.verb) else {
            let peer = context.connection.peer
            services.logger.notice("denied request", metadata: ["peer": "\(peer)", "verb": "\(request.verb.rawValue)"])
            services.trail.denied(peer: peer, verb: request.verb)
            if verbs.isEmpty {
                // A reload took every grant away: like a refused peer, one
                // error and the connection is closed.
                writeError(Self.grantedNothingMessage(peer, policy: services.policy), into: &context.response)
                return .respondAndClose
            }
            throw IpcError.unauthorized("uid \(peer.uid) may not use \"\(request.verb.rawValue)\" (allowed: \(verbs.description))")
        }
        switch request {
        case .ping:
            context.response.bytes.append(contentsOf: OkFrame.empty)
            return .respond
        case .status:
            try OkFrame.write(status(context.statistics), into: &context.response)
            return .respond
        case .publish(let alert):
            return try publish(alert, context: context)
        case .subscribe(let since):
            let next = context.subscribe(since: since)
            writeOk(into: &context.response) { writer in
                writer.key("subscribed")
                writer.bool(true)
                writer.key("next")
                writer.uint(next)
            }
            return .respond
        case .alerts(let limit):
            writeAlerts(limit: limit ?? WireDefaults.alertsLimit, context: context)
            return .respond
        case .kill(let reason):
            return kill(reason: reason, peer: context.connection.peer)
        case .audit(let options):
            let services = self.services
            let peer = context.connection.peer
            return .offload {
                let report = AuditRunner(services: services, options: options).run()
                services.trail.auditRun(report, peer: peer)
                return try OffloadedReply.writing { try OkFrame.write(report, into: &$0) }
            }
        case .reloadPolicy:
            let services = self.services
            let peer = context.connection.peer
            return .offload {
                let policy = try services.reloadPolicy(trigger: .request(peer))
                return OffloadedReply.writing { writer in
                    writeOk(into: &writer) { writer in
                        writer.key("policyVersion")
                        writer.int(policy.version)
                    }
                }
            }
        }
    }

    private func publish(_ alert: AlertInput, context: RequestContext) throws -> Reply {
        guard !alert.source.isEmpty else { throw PublishError("alert.source: must not be empty") }
        guard !alert.message.isEmpty else { throw PublishError("alert.message: must not be empty") }
        let sequence = context.publish { sequence, milliseconds, writer in
            AlertFrame.write(sequence: sequence, timestampMilliseconds: milliseconds, alert: alert, into: &writer)
        }
        writeOk(into: &context.response) { writer in
            writer.key("sequence")
            writer.uint(sequence)
        }
        return .respond
    }

    private func writeAlerts(limit: Int, context: RequestContext) {
        context.response.beginObject()
        context.response.key("type")
        context.response.string("ok")
        context.response.key("alerts")
        context.response.beginArray()
        context.forEachRetainedFrame(newest: max(0, limit)) { _, frame in
            AlertFrame.writeAlertObject(fromFrame: frame, into: &context.response)
        }
        context.response.endArray()
        context.response.endObject()
        context.response.newline()
    }

    private func kill(reason: String?, peer: PeerCred) -> Reply {
        let services = self.services
        return .offload {
            let now = DaemonServices.realtimeMilliseconds()
            var persisted = true
            var alreadyTripped = false
            do {
                if case .alreadyTripped = try services.killSwitch.trip(reason: reason, peer: peer, timestampMilliseconds: now) {
                    alreadyTripped = true
                }
            } catch {
                // The switch trips in memory even when the disk fails; the
                // failure is reported, not allowed to block the kill.
                persisted = false
                services.logger.error("kill switch tripped but could not be persisted: \(error)")
            }
            let sequence = services.broadcastKillAlert(reason: reason, peer: peer, alreadyTripped: alreadyTripped)
            services.logger.critical(alreadyTripped ? "kill requested again (the switch stays tripped as first recorded)" : "kill switch tripped", metadata: [
                "reason": "\(reason.map(Printable.escape) ?? "none")", "uid": "\(peer.uid)", "pid": "\(peer.pid)", "alert": "\(sequence)",
            ])
            // On disk (fsync'd) before the caller hears "ok".
            services.trail.killed(reason: reason, peer: peer, alertSequence: sequence, persisted: persisted, alreadyTripped: alreadyTripped)
            services.onKill.request(OnKillRunner.Request(reason: reason, peer: peer))
            return OffloadedReply.writing { writer in
                writeOk(into: &writer) { writer in
                    writer.key("killed")
                    writer.bool(true)
                    writer.key("sequence")
                    writer.uint(sequence)
                    if !persisted {
                        writer.key("persisted")
                        writer.bool(false)
                    }
                    if alreadyTripped {
                        writer.key("alreadyTripped")
                        writer.bool(true)
                    }
                }
            }
        }
    }

    private func status(_ statistics: EngineStatistics) -> DaemonStatus {
        let kill = services.killSwitch.current
        var status = MonitorStatus(
            running: true, killed: kill.killed, killReason: kill.reason, uptimeSecs: (services.uptimeSeconds * 1000).rounded() / 1000,
            pid: getpid(), version: services.version, connections: statistics.connections,
            subscribers: statistics.subscribers, alertsPublished: statistics.broadcastPublished,
            alertsRetained: statistics.broadcastRetained, lastSequence: statistics.lastSequence,
            lagEvents: statistics.lagEvents, policyVersion: services.policy.version)
        status.connectionCapacity = statistics.connectionCapacity
        status.lagDisconnects = statistics.lagDisconnects
        status.slowDisconnects = statistics.slowDisconnects
        status.completionQueueOverflows = statistics.completionQueueOverflows
        status.receiveBufferExhaustions = statistics.receiveBufferExhaustions
        status.malformedFrames = statistics.malformedFrames
        status.oversizedFrames = statistics.oversizedFrames
        status.connectionsRefused = statistics.connectionsRefused
        status.ioUring = services.engine?.ringDescription
        status.epoch = services.engine?.epoch.description
        status.frameTimeouts = statistics.frameTimeouts
        return DaemonStatus(status, auditLog: services.trail.health)
    }
}

struct PublishError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `{"type":"ok",<members written by body>}\n`
func writeOk(into writer: inout JSONWriter, _ body: (inout JSONWriter) -> Void) {
    writer.beginObject()
    writer.key("type")
    writer.string("ok")
    body(&writer)
    writer.endObject()
    writer.newline()
}

extension DaemonServices {
    /// Broadcasts the `critical` kill alert with the reason and the caller.
    func broadcastKillAlert(reason: String?, peer: PeerCred, alreadyTripped: Bool) -> UInt64 {
        var members: JSONObject = [
            "reason": reason.map { .string($0) } ?? .null,
            "uid": .number(JSONNumber(Int(peer.uid))),
            "pid": .number(JSONNumber(Int(peer.pid))),
        ]
        if alreadyTripped { members.members.append(.init(key: "alreadyTripped", value: .bool(true))) }
        let what = alreadyTripped ? "kill requested again (switch already tripped)" : "kill switch tripped"
        let alert = AlertInput(
            severity: .critical, source: "secureopsd",
            message: reason.map { "\(what): \($0)" } ?? what,
            details: RawJSON(.object(members)))
        guard let engine else { return 0 }
        return engine.publish { sequence, milliseconds, writer in
            AlertFrame.write(sequence: sequence, timestampMilliseconds: milliseconds, alert: alert, into: &writer)
        }
    }
}
