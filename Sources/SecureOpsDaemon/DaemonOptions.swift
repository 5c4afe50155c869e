import Glibc
import Logging
import SecureOpsEngine
import SecureOpsForwarder

/// Everything `secureopsd` is started with.
public struct DaemonOptions: Sendable {
    public var socketPath: String
    public var socketMode: UInt32
    public var stateDirectory: String
    /// The policy file; nil runs with the built-in policy.
    public var policyPath: String?
    public var logLevel: Logger.Level
    /// Engine settings beyond the policy's limits (tests shrink them).
    public var engine: EngineTuning
    /// The journal in `<state dir>/journal`; nil keeps alerts in memory
    /// only (`--no-journal`).
    public var journal: JournalConfiguration? = JournalConfiguration()
    /// Forwarding to NATS JetStream (`--forward-nats`); needs the journal.
    public var forwarder: ForwarderConfiguration?

    public init(
        socketPath: String = WireDefaults.socketPath(), socketMode: UInt32 = 0o660,
        stateDirectory: String = DaemonOptions.defaultStateDirectory(), policyPath: String? = DaemonOptions.defaultPolicyPath(),
        logLevel: Logger.Level = .info, engine: EngineTuning = EngineTuning()
    ) {
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.stateDirectory = stateDirectory
        self.policyPath = policyPath
        self.logLevel = logLevel
        self.engine = engine
    }

    /// `/var/lib/secureops` for root, else `$XDG_STATE_HOME/secureops` or
    /// `~/.local/state/secureops`.
    public static func defaultStateDirectory() -> String {
        if getuid() == 0 { return "/var/lib/secureops" }
        if let state = getenv("XDG_STATE_HOME").map({ String(cString: $0) }), !state.isEmpty {
            return state + "/secureops"
        }
        let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
        return home + "/.local/state/secureops"
    }

    /// `/etc/secureops/policy.json` when it exists.
    public static func defaultPolicyPath() -> String? {
        let path = "/etc/secureops/policy.json"
        return access(path, F_OK) == 0 ? path : nil
    }
}

/// Engine knobs an operator (or a test) may turn from the command line.
public struct EngineTuning: Sendable {
    public var stuckSendTimeoutSeconds: Double = 10
    public var frameTimeoutSeconds: Double = 30
    public var retainedBytes = 64 << 20
    public var maxBytesPerSend = 64 << 10
    public var receiveBufferCount = 1024
    public var completionQueueEntries: UInt32 = 32_768
    public var maxConnections: Int?
    /// Connection slots only root and the daemon's uid may take.
    public var reservedConnections = 32
    public var shutdownGraceSeconds: Double = 5
    public var ioBackend = IOBackendChoice.auto
    public var journalWriter = EngineConfiguration.JournalWriterChoice.loop

    public init() {}
}
