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

    /// Connections admitted per uid, root's and the daemon's own not
    /// counted, and which connections were counted.
    private var connectionsPerUID: [UInt32: Int] = [:]
    private var counted: Set<ConnectionID> = []

    /// Who may connect: a peer the policy grants something, while there is
    /// room for it. Root and the daemon's uid always find room: the last
    /// `--reserved-connections` slots (at most half) are theirs, and other
    /// uids may hold `limits.maxConnectionsPerUid` each, so no one user can
    /// lock the operators out.
    public func admit(_ connection: ConnectionInfo) -> Admission {
        // Policy is by kernel credentials: a peer without them (TCP) is
        // nobody the daemon can authorize.
        guard let peer = connection.credentials else {
            return .refuse("not authorized: secureopsd serves local peers on its Unix socket only")
        }
        let verbs = allowedVerbs(connection)
        let policy = services.policy
        guard !verbs.isEmpty else {
            services.trail.connectionRefused(peer: peer, reason: "policy version \(policy.version) grants this peer nothing")
            return .refuse(Self.grantedNothingMessage(peer, policy: policy))
        }
        guard !peer.isPrivileged(daemonUID: services.daemonUID) else { return .admit }
        if let statistics = services.engine?.statistics {
            let capacity = statistics.connectionCapacity
            let unreserved = capacity - min(max(0, services.options.engine.reservedConnections), capacity / 2)
            // The count includes this connection.
            if statistics.connections > unreserved {
                services.trail.connectionRefused(peer: peer, reason: "every slot but the \(capacity - unreserved) reserved for root and the daemon's user is taken")
                return .refuse("server is at its connection limit (\(unreserved); the other \(capacity - unreserved) are reserved); try again later")
            }
        }
        let cap = policy.limits.maxConnectionsPerUid
        guard connectionsPerUID[peer.uid, default: 0] < cap else {
            services.trail.connectionRefused(peer: peer, reason: "per-uid connection cap (limits.maxConnectionsPerUid) reached")
            return .refuse("too many connections for uid \(peer.uid) (limit \(cap)); close some and retry")
        }
        connectionsPerUID[peer.uid, default: 0] += 1
        counted.insert(connection.id)
        return .admit
    }

    /// Says what a refused peer needs, not where the policy lives: the
    /// peer may be the watched agent itself.
    static func grantedNothingMessage(_ peer: PeerCred, policy: Policy) -> String {
        "not authorized: uid \(peer.uid) may not use this socket (policy version \(policy.version) grants it nothing); ask an administrator for a grant"
    }

    private func allowedVerbs(_ connection: ConnectionInfo) -> VerbSet {
        let peer = connection.kernelPeer
        if peer.isPrivileged(daemonUID: services.daemonUID) { return .all }
        let (policy, generation) = services.policyAndGeneration
        if let cached = grants[connection.id], cached.generation == generation { return cached.verbs }
        let verbs = policy.allowedVerbs(for: peer, groups: connection.groups, daemonUID: services.daemonUID)
        grants[connection.id] = CachedGrant(verbs: verbs, generation: generation)
        return verbs
    }

    /// After a reload, every open connection is held to the new policy:
    /// one granted nothing is closed, a subscription without `subscribe`
    /// ends (its connection keeps the verbs it still has).
    public func review(_ connection: ConnectionInfo, isSubscribed: Bool) -> Review {
        let verbs = allowedVerbs(connection)
        let policy = services.policy
        if verbs.isEmpty {
            services.trail.connectionRefused(peer: connection.kernelPeer, reason: "policy version \(policy.version) grants this peer nothing (reload)")
            return .close(Self.grantedNothingMessage(connection.kernelPeer, policy: policy))
        }
        if isSubscribed && !verbs.contains(.subscribe) {
            services.trail.subscriptionEnded(peer: connection.kernelPeer, policyVersion: policy.version)
            return .endSubscription("subscription ended: policy version \(policy.version) no longer grants uid \(connection.kernelPeer.uid) \"subscribe\" (allowed: \(verbs.description))")
        }
        return .keep
    }

    public func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason) {
        grants[connection.id] = nil
        if counted.remove(connection.id) != nil {
            let uid = connection.kernelPeer.uid // counted only once admitted
            let left = connectionsPerUID[uid, default: 1] - 1
            connectionsPerUID[uid] = left > 0 ? left : nil
        }
        if reason == .lagged || reason == .stuckSend {
            services.trail.subscriberCutOff(peer: connection.kernelPeer, reason: reason)
        }
    }

    // MARK: - Requests

    public func handle(_ request: IpcRequest, context: RequestContext) throws -> Reply {
        let verb = PolicyVerb(request)
        // Root and the daemon's uid: no policy lookup, no copy of the
        // connection's details on the way.
        let verbs = context.kernelPeer.isPrivileged(daemonUID: services.daemonUID) ? VerbSet.all : allowedVerbs(context.connection)
        guard verbs.contains(verb) else {
            let peer = context.connection.kernelPeer
            services.trail.denied(peer: peer, verb: verb)
            if verbs.isEmpty {
                // A reload took every grant away: like a refused peer, one
                // error and the connection is closed.
                writeError(Self.grantedNothingMessage(peer, policy: services.policy), into: &context.response)
                return .respondAndClose
            }
            throw IpcError.unauthorized("uid \(peer.uid) may not use \(verb.requestDescription) (allowed: \(verbs.description))")
        }
        switch request {
        case .ping:
            context.response.bytes.append(contentsOf: OkFrame.empty)
            return .respond
        case .status:
            let detailed = verbs == .all
            try OkFrame.write(status(context.statistics, detailed: detailed), into: &context.response)
            return .respond
        case .publish(let alert):
            return try publish(alert, context: context)
        case .subscribe(let since):
            let next = context.subscribe(since: since)
            OkFrame.write(into: &context.response) { writer in
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
            return offload(verb, context) { services, peer in
                try services.kill(reason: reason, peer: peer)
            }
        case .audit(let options):
            return offload(verb, context) { services, peer in
                let report = AuditRunner(services: services, options: options).run()
                services.trail.auditRun(report, peer: peer)
                return try OffloadedReply.writing { try OkFrame.write(report, into: &$0) }
            }
        case .reloadPolicy:
            return offload(verb, context) { services, peer in
                let policy = try services.reloadPolicy(trigger: .request(peer))
                return OffloadedReply.writing { writer in
                    OkFrame.write(into: &writer) { writer in
                        writer.key("policyVersion")
                        writer.int(policy.version)
                    }
                }
            }
        }
    }

    /// Publishes with the publisher's kernel credentials as `origin`, so
    /// nobody can pass an alert off as someone else's; the daemon's own
    /// source name is not for peers. The reply waits until the journal has
    /// the alert; `"persisted":false` says it could not be written (the
    /// alert still reached every subscriber).
    private func publish(_ alert: AlertInput, context: RequestContext) throws -> Reply {
        guard !alert.source.isEmpty else { throw PublishError("alert.source: must not be empty") }
        guard !alert.message.isEmpty else { throw PublishError("alert.message: must not be empty") }
        guard !DaemonServices.isReservedSource(alert.source) else {
            throw PublishError("alert.source: \"\(DaemonServices.reservedSource)\" is reserved for the daemon's own alerts; name your own source")
        }
        let origin = AlertOrigin(context.kernelPeer)
        let sequence = context.publish { sequence, milliseconds, writer in
            AlertFrame.write(sequence: sequence, timestampMilliseconds: milliseconds, alert: alert, origin: origin, into: &writer)
        }
        return .respondWhenPersisted(sequence: sequence) { sequence, persistence, writer in
            OkFrame.write(into: &writer) { writer in
                writer.key("sequence")
                writer.uint(sequence)
                if case .notPersisted = persistence {
                    writer.key("persisted")
                    writer.bool(false)
                }
            }
        }
    }

    /// At most `WireDefaults.alertsLimitMaximum` alerts and
    /// `alertsReplyMaxBytes` bytes, whatever `limit` asks: a 40-byte request
    /// must not make a reply the size of everything retained.
    private func writeAlerts(limit: Int, context: RequestContext) {
        let capped = min(max(0, limit), WireDefaults.alertsLimitMaximum)
        OkFrame.write(into: &context.response) { writer in
            writer.key("alerts")
            writer.beginArray()
            let truncated = context.forEachRetainedFrame(newest: capped, maxBytes: WireDefaults.alertsReplyMaxBytes) { _, frame in
                AlertFrame.writeAlertObject(fromFrame: frame, into: &writer)
            }
            writer.endArray()
            if truncated {
                writer.key("truncated")
                writer.bool(true)
            }
        }
    }

    /// Offloaded work, checked against the policy in force when it runs,
    /// not only when it was read: a reload between the two (queued behind
    /// this connection's earlier offloaded requests, or on the pool) takes
    /// effect for everything that has not run yet.
    private func offload(
        _ verb: PolicyVerb, _ context: RequestContext,
        _ work: @escaping @Sendable (DaemonServices, PeerCred) throws -> OffloadedReply
    ) -> Reply {
        let services = self.services
        let connection = context.connection
        return .offload {
            try services.recheck(verb, for: connection)
            return try work(services, connection.kernelPeer)
        }
    }

    /// `detailed` for operators (root, the daemon's uid, peers granted
    /// `*`); everyone else sees counters but not who tripped the switch and
    /// why, the daemon's pid, or paths in error messages (the fields stay,
    /// as null or 0, so every client still decodes them).
    private func status(_ statistics: EngineStatistics, detailed: Bool) -> DaemonStatus {
        let kill = services.killSwitch.current
        var status = MonitorStatus(
            running: true, killed: kill.killed, killReason: detailed ? kill.reason : nil, uptimeSecs: (services.uptimeSeconds * 1000).rounded() / 1000,
            pid: detailed ? getpid() : 0, version: services.version, connections: statistics.connections,
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
        let backend = services.engine?.servingBackend
        status.ioUring = backend?.ringFlags
        status.ioBackend = backend?.kind.rawValue
        status.epoch = services.engine?.epoch.description
        status.frameTimeouts = statistics.frameTimeouts
        status.readingPaused = statistics.readingPaused
        status.framesReceived = statistics.framesReceived
        status.journal = statistics.journal.map { JournalReport($0, detailed: detailed) }
        status.forwarder = services.forwarder.map { ForwarderReport($0.status, detailed: detailed) } ?? .disabled
        var auditLog = services.trail.health
        if !detailed { auditLog.lastError = auditLog.lastError.map { _ in "writes are failing (details for operators)" } }
        return DaemonStatus(status, auditLog: auditLog)
    }
}

struct PublishError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension ConnectionInfo {
    /// The peer's kernel credentials. The daemon listens only on its Unix
    /// socket and `admit` refuses any peer without credentials, so every
    /// admitted connection has them.
    var kernelPeer: PeerCred {
        guard let credentials else { preconditionFailure("connection \(id) was admitted without kernel credentials") }
        return credentials
    }
}

extension RequestContext {
    /// As `ConnectionInfo.kernelPeer`, without building the rest.
    var kernelPeer: PeerCred {
        guard let credentials else { preconditionFailure("a request from a peer without kernel credentials was handled") }
        return credentials
    }
}
