import Glibc
import Logging
import Synchronization
import SecureOpsEngine

/// The daemon's shared state: what handlers on the loop thread and work on
/// the Dispatch pool both reach. Everything here is thread-safe.
public final class DaemonServices: Sendable {
    public let options: DaemonOptions
    public let logger: Logger
    public let killSwitch: KillSwitch
    public let daemonUID: UInt32
    public let startedAt: UInt64
    public let version = "0.1.0"
    private let policyState: Mutex<Policy>
    private let engineHandle = Mutex<Engine<SecureOpsHandler>?>(nil)
    private let reloads = Mutex<Int>(0)

    init(options: DaemonOptions, policy: Policy, logger: Logger) {
        self.options = options
        self.logger = logger
        daemonUID = getuid()
        startedAt = Self.monotonicNanoseconds()
        policyState = Mutex(policy)
        killSwitch = KillSwitch(stateDirectory: options.stateDirectory) { message in
            logger.error("\(message)")
        }
    }

    func attach(_ engine: Engine<SecureOpsHandler>) {
        engineHandle.withLock { $0 = engine }
    }

    var engine: Engine<SecureOpsHandler>? {
        engineHandle.withLock { $0 }
    }

    public var policy: Policy {
        policyState.withLock { $0 }
    }

    /// Bumped on every successful reload, so handlers know to recompute
    /// cached grants.
    var policyGeneration: Int {
        reloads.withLock { $0 }
    }

    /// Re-reads the policy file and swaps it in atomically; on any error the
    /// old policy stays in force and the error says why.
    public func reloadPolicy() throws(PolicyLoader.Failure) -> Policy {
        guard let path = options.policyPath else {
            logger.info("reloadPolicy: no --policy file configured; the built-in policy stays in force")
            return policy
        }
        let fresh: Policy
        do {
            fresh = try PolicyLoader.load(path: path, daemonUID: daemonUID)
        } catch {
            logger.error("policy reload rejected, previous policy (version \(policy.version)) stays in force: \(error)")
            throw error
        }
        policyState.withLock { $0 = fresh }
        reloads.withLock { $0 += 1 }
        engine?.updateLimits(engineLimits(for: fresh))
        logger.notice("policy reloaded", metadata: ["version": "\(fresh.version)", "grants": "\(fresh.grants.count)", "path": "\(path)"])
        return fresh
    }

    /// The engine limits a policy implies.
    func engineLimits(for policy: Policy) -> EngineLimits {
        var limits = EngineLimits()
        limits.maxFrameBytes = policy.limits.maxFrameBytes
        limits.maxConnectionsPerUID = policy.limits.maxConnectionsPerUid
        limits.retainedFrames = policy.limits.retainedAlerts
        limits.onLag = policy.limits.onLag
        limits.retainedBytes = options.engine.retainedBytes
        limits.maxBytesPerSend = options.engine.maxBytesPerSend
        limits.maxConnections = options.engine.maxConnections
        limits.stuckSendTimeout = .milliseconds(Int64(options.engine.stuckSendTimeoutSeconds * 1000))
        return limits
    }

    var uptimeSeconds: Double {
        Double(Self.monotonicNanoseconds() - startedAt) / 1e9
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func realtimeMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
