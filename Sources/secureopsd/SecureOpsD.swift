import ArgumentParser
import Glibc
import Logging
import SecureOpsDaemon
import SecureOpsEngine
import SecureOpsForwarder

@main
struct SecureOpsD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secureopsd",
        abstract: "The SecureOps daemon: an io_uring control socket that fans security alerts out to every subscriber.",
        subcommands: [Serve.self, ResetKill.self, CheckPolicy.self],
        defaultSubcommand: Serve.self)
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension IOBackendChoice: ExpressibleByArgument {}
extension JournalSyncPolicy: ExpressibleByArgument {}
extension EngineConfiguration.JournalWriterChoice: ExpressibleByArgument {}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon in the foreground (the default).")

    @Option(help: "Socket path (default per WIRE.md: $XDG_RUNTIME_DIR/secureops/secureopsd.sock, /run/secureops/secureopsd.sock for root, else /tmp/secureops-$UID/secureopsd.sock).")
    var socket: String?

    @Option(name: .customLong("socket-mode"), help: "Socket file mode, octal.")
    var socketMode: String = "0660"

    @Option(name: .customLong("state-dir"), help: "State directory (kill switch, audit log, key).")
    var stateDir: String?

    @Option(help: "Policy file (default /etc/secureops/policy.json when it exists).")
    var policy: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .customLong("stuck-send-timeout"), help: "Seconds a send may make no progress before the connection is closed.")
    var stuckSendTimeout: Double = 10

    @Option(name: .customLong("frame-timeout"), help: "Seconds a frame may take to arrive whole after its first byte (slowloris defence).")
    var frameTimeout: Double = 30

    @Option(name: .customLong("max-connections"), help: "Connection cap (default: what RLIMIT_NOFILE allows).")
    var maxConnections: Int?

    @Option(name: .customLong("reserved-connections"), help: "Connection slots only root and the daemon's uid may take (at most half the cap).")
    var reservedConnections: Int = 32

    @Option(name: .customLong("retained-bytes"), help: "Bytes of alert frames the broadcast ring retains.")
    var retainedBytes: Int = 64 << 20

    @Option(name: .customLong("receive-buffers"), help: "Shared receive buffers (a power of two).")
    var receiveBuffers: Int = 1024

    @Option(name: .customLong("cq-entries"), help: "Completion queue entries.")
    var completionQueueEntries: UInt32 = 32_768

    @Option(name: .customLong("io-backend"), help: "auto (io_uring where it can be set up, else epoll), io_uring or epoll.")
    var ioBackend: IOBackendChoice = .auto

    @Option(name: .customLong("journal-sync"), help: "always (a publish is answered after fsync; one fsync per batch), interval (fsync every --journal-sync-interval; survives a crash of the daemon, a power loss may lose the last interval) or none.")
    var journalSync: JournalSyncPolicy = .interval

    @Option(name: .customLong("journal-sync-interval"), help: "Milliseconds between fsyncs with --journal-sync interval.")
    var journalSyncInterval: Int = 100

    @Option(name: .customLong("journal-max-bytes"), help: "Journal retention by size (bytes, or with K, M, G): the oldest segment is dropped first.")
    var journalMaxBytes: String = "1G"

    @Option(name: .customLong("journal-max-age"), help: "Journal retention by age (seconds, or with s, m, h, d).")
    var journalMaxAge: String = "7d"

    @Flag(name: .customLong("no-journal"), help: "Keep alerts in memory only: a restart begins a new stream.")
    var noJournal = false

    @Option(name: .customLong("journal-writer"), help: "loop (on io_uring the event loop writes the journal through its ring; a thread on epoll) or thread (a writer thread: measured up to 1.25x the publishes/s with 1,600 publishes in flight, the same fan-out and single-publisher latency).")
    var journalWriter: EngineConfiguration.JournalWriterChoice = .loop

    // For tests of retention: small segments drop sooner.
    @Option(name: .customLong("journal-segment-bytes"), help: ArgumentHelp(visibility: .hidden))
    var journalSegmentBytes: Int = 64 << 20

    @Option(name: .customLong("forward-nats"), help: "Forward every alert to NATS JetStream: server URLs, comma-separated (cluster seeds), like nats://nats1:4222,nats://nats2:4222.")
    var forwardNats: String?

    @Option(name: .customLong("forward-stream"), help: "The JetStream stream (created if missing).")
    var forwardStream = "SECUREOPS_ALERTS"

    @Option(name: .customLong("forward-subject-prefix"), help: "Alerts go to <prefix>.<host>.<severity>; the stream takes <prefix>.>.")
    var forwardSubjectPrefix = "secureops.alerts"

    @Option(name: .customLong("forward-replicas"), help: "Replicas of a stream created by the daemon.")
    var forwardReplicas = 1

    @Option(name: .customLong("forward-host-name"), help: "This host in subjects and the Secureops-Host header (default: the hostname, dots as _).")
    var forwardHostName: String?

    @Option(name: .customLong("forward-tls-ca"), help: "CA certificate(s) (PEM) to trust for the NATS servers.")
    var forwardTLSCA: String?

    @Option(name: .customLong("forward-tls-cert"), help: "Client certificate (PEM), with --forward-tls-key.")
    var forwardTLSCert: String?

    @Option(name: .customLong("forward-tls-key"), help: "Client key (PEM), with --forward-tls-cert.")
    var forwardTLSKey: String?

    @Option(name: .customLong("forward-creds"), help: "NATS credentials file (JWT and NKey seed).")
    var forwardCreds: String?

    @Option(name: .customLong("forward-token-file"), help: "File holding the NATS token.")
    var forwardTokenFile: String?

    @Option(name: .customLong("forward-user"), help: "NATS user, with --forward-password-file.")
    var forwardUser: String?

    @Option(name: .customLong("forward-password-file"), help: "File holding the NATS user's password.")
    var forwardPasswordFile: String?

    func validate() throws {
        if forwardNats == nil {
            let stray = [forwardTLSCA, forwardTLSCert, forwardTLSKey, forwardCreds, forwardTokenFile, forwardUser, forwardPasswordFile, forwardHostName].contains { $0 != nil }
            guard !stray else { throw ValidationError("the --forward-* options need --forward-nats URL") }
        } else {
            guard !noJournal else { throw ValidationError("--forward-nats forwards from the journal: drop --no-journal") }
            guard (forwardTLSCert == nil) == (forwardTLSKey == nil) else { throw ValidationError("--forward-tls-cert and --forward-tls-key go together") }
            guard (forwardUser == nil) == (forwardPasswordFile == nil) else { throw ValidationError("--forward-user and --forward-password-file go together") }
            guard (1...5).contains(forwardReplicas) else { throw ValidationError("--forward-replicas must be 1 to 5") }
            guard forwardHostName.map(Self.isSubjectToken) ?? true else {
                throw ValidationError("--forward-host-name must be one subject token: letters, digits, _ and -")
            }
            guard forwardSubjectPrefix.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ Self.isSubjectToken(String($0)) }) else {
                throw ValidationError("--forward-subject-prefix must be dot-separated tokens of letters, digits, _ and -")
            }
        }
        guard journalSyncInterval > 0 else { throw ValidationError("--journal-sync-interval must be at least 1 (milliseconds)") }
        guard let bytes = Self.size(journalMaxBytes), bytes >= 1 << 20 else { throw ValidationError("--journal-max-bytes must be a size of at least 1M, like 512M or 2G") }
        _ = bytes
        guard let age = Self.seconds(journalMaxAge), age > 0 else { throw ValidationError("--journal-max-age must be a duration, like 3600, 12h or 7d") }
        _ = age
        guard UInt32(socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode must be octal, like 0660") }
        guard reservedConnections >= 0 else { throw ValidationError("--reserved-connections must be 0 or more") }
        guard receiveBuffers > 0 && receiveBuffers & (receiveBuffers - 1) == 0 && receiveBuffers <= 32768 else {
            throw ValidationError("--receive-buffers must be a power of two up to 32768")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        var tuning = EngineTuning()
        tuning.stuckSendTimeoutSeconds = stuckSendTimeout
        tuning.frameTimeoutSeconds = frameTimeout
        tuning.maxConnections = maxConnections
        tuning.reservedConnections = reservedConnections
        tuning.retainedBytes = retainedBytes
        tuning.receiveBufferCount = receiveBuffers
        tuning.completionQueueEntries = completionQueueEntries
        tuning.ioBackend = ioBackend
        tuning.journalWriter = journalWriter
        var options = DaemonOptions(
            socketPath: socket ?? WireDefaults.socketPath(),
            socketMode: UInt32(socketMode, radix: 8)!,
            stateDirectory: stateDir ?? DaemonOptions.defaultStateDirectory(),
            policyPath: policy ?? DaemonOptions.defaultPolicyPath(),
            logLevel: logLevel, engine: tuning)
        if noJournal {
            options.journal = nil
        } else {
            var journal = JournalConfiguration()
            journal.syncPolicy = journalSync
            journal.syncIntervalMilliseconds = journalSyncInterval
            journal.maxBytes = Self.size(journalMaxBytes)!
            journal.maxAgeSeconds = Self.seconds(journalMaxAge)!
            journal.segmentBytes = max(4096, journalSegmentBytes)
            options.journal = journal
        }
        if let forwardNats {
            var connection = NATSConnectionOptions(servers: forwardNats.split(separator: ",").map { String($0) })
            connection.caFile = forwardTLSCA
            connection.certificateFile = forwardTLSCert
            connection.keyFile = forwardTLSKey
            connection.credentialsFile = forwardCreds
            connection.tokenFile = forwardTokenFile
            connection.user = forwardUser
            connection.passwordFile = forwardPasswordFile
            var forwarding = ForwarderConfiguration(connection: connection)
            forwarding.streamName = forwardStream
            forwarding.subjectPrefix = forwardSubjectPrefix
            forwarding.replicas = forwardReplicas
            if let forwardHostName { forwarding.hostName = forwardHostName }
            options.forwarder = forwarding
        }
        let status = DaemonRunner.run(options)
        if status != 0 { throw ExitCode(status) }
    }
}

extension Serve {
    /// A NATS subject token the daemon accepts: letters, digits, _ and -.
    static func isSubjectToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || byte == 95 || byte == 45
        }
    }

    /// "1048576", "512K", "64M", "1G".
    static func size(_ text: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if let unit = text.last.flatMap({ units[Character($0.uppercased())] }) {
            return Int(text.dropLast()).flatMap { $0.multipliedReportingOverflow(by: unit).overflow ? nil : $0 * unit }
        }
        return Int(text)
    }

    /// "3600", "45s", "30m", "12h", "7d".
    static func seconds(_ text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last.flatMap({ units[$0] }) {
            return Int(text.dropLast()).map { $0 * unit }
        }
        return Int(text)
    }
}

struct ResetKill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset-kill",
        abstract: "Clear a tripped kill switch. The daemon must be stopped; the reset is recorded in the audit log.",
        discussion: """
            Run it as the daemon's user (root for the default state directory). It refuses while \
            a daemon answers on the socket or holds the state directory's audit log.
            """)

    @Option(name: .customLong("state-dir"), help: "State directory of the daemon.")
    var stateDir: String?

    @Option(help: "Socket of the daemon, to make sure it is not running.")
    var socket: String?

    func run() throws {
        let socketPath = socket ?? WireDefaults.socketPath()
        if DaemonProbe.isServing(socketPath: socketPath) {
            print("secureopsd is running on \(socketPath); stop it first, then reset the kill switch")
            throw ExitCode(2)
        }
        let directory = stateDir ?? DaemonOptions.defaultStateDirectory()
        let outcome: KillSwitchReset.Outcome
        do {
            outcome = try KillSwitchReset.run(stateDirectory: directory) { message in
                FileHandle.standardError.write("secureopsd reset-kill: \(message)\n")
            }
        } catch {
            print(error.description)
            throw ExitCode(error.exitCode)
        }
        if let previous = outcome.previous, previous.killed {
            print("kill switch cleared (was tripped\(previous.trippedAt.map { " at \($0)" } ?? ""): \(previous.reason.map(Printable.escape) ?? "no reason"))")
        } else {
            print("kill switch was not tripped; nothing to clear")
        }
        if outcome.recorded {
            print("recorded in \(outcome.logPath)")
        } else {
            print("warning: the reset could not be recorded in \(outcome.logPath); see the error above")
            throw ExitCode(1)
        }
    }
}

/// Writes to stderr without Foundation.
enum FileHandle {
    case standardError
    func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

struct CheckPolicy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-policy", abstract: "Validate a policy file and print what it grants.")

    @Argument(help: "The policy file.")
    var path: String

    func run() throws {
        do {
            let policy = try PolicyLoader.load(path: path)
            print("policy version \(policy.version): \(policy.grants.count) grant(s)")
            for grant in policy.grants { print("  \(grant.label): \(grant.allow)") }
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
