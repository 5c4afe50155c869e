import Glibc

/// How to reach and authenticate to a NATS deployment: shared by the
/// forwarder and the tail. Secrets are read from files (the paths are in
/// the daemon's configuration, the secrets are not).
public struct NATSConnectionOptions: Sendable, Equatable {
    /// Server URLs (`nats://host:port`, `tls://host:port`); several are
    /// seeds of one cluster, tried in order.
    public var servers: [String]
    /// PEM file of the CA(s) to trust; set, TLS is required.
    public var caFile: String?
    /// PEM client certificate and its key, for servers that verify clients.
    public var certificateFile: String?
    public var keyFile: String?
    /// A `.creds` file (JWT and NKey seed).
    public var credentialsFile: String?
    /// A file holding the token (surrounding whitespace ignored).
    public var tokenFile: String?
    /// User name, and a file holding the password.
    public var user: String?
    public var passwordFile: String?
    /// How long one connection attempt may take (TCP, INFO, TLS, CONNECT).
    public var connectTimeout: Duration = .seconds(2)
    /// The connection's name as the server's monitoring shows it.
    public var name: String = "secureopsd"

    public init(servers: [String]) {
        self.servers = servers
    }
}

public struct ForwarderConfiguration: Sendable, Equatable {
    public var connection: NATSConnectionOptions
    public var streamName: String = "SECUREOPS_ALERTS"
    /// Alerts go to `<subjectPrefix>.<host>.<severity>`; a created stream
    /// takes `<subjectPrefix>.>`.
    public var subjectPrefix: String = "secureops.alerts"
    /// Replicas of a stream the forwarder creates (an existing one is used
    /// as it is).
    public var replicas: Int = 1
    public var hostName: String = ForwarderConfiguration.defaultHostName()
    /// Publishes in flight without an ack, at most. Measured on a 2-core
    /// machine, server on loopback, 100,000 alerts of 256 bytes (debug
    /// build; libnats alone, scripts/bench-forward-anchor.sh, in brackets):
    /// 64 → ~55k/s, 256 → 110–145k/s, 1024 → 100–175k/s [130–170k/s],
    /// 4096 → 120–200k/s. Past 256 the server is the limit; 1024 keeps
    /// headroom for a farther server while what is re-sent after an outage
    /// stays small (≤ 1024 alerts).
    public var window: Int = 1024
    /// The acknowledged cursor's file in the cursor directory.
    public var cursorFileName: String = "nats-forwarder.cursor"
    /// The duplicate window of a stream the forwarder creates: a message
    /// id seen within it is stored once. Re-sends after an outage or a
    /// restart are exactly-once only within it.
    public var duplicateWindow: Duration = .seconds(120)
    /// A publish without an ack for this long while connected is taken as
    /// lost: everything after the cursor is sent again.
    public var ackTimeout: Duration = .seconds(5)
    /// The cursor file is rewritten (and fsync'd) at most this often.
    public var cursorSyncInterval: Duration = .milliseconds(200)
    /// Connection attempts back off from `retryInitial` doubling to
    /// `retryMaximum`.
    public var retryInitial: Duration = .milliseconds(250)
    public var retryMaximum: Duration = .seconds(30)

    public init(servers: [String]) {
        connection = NATSConnectionOptions(servers: servers)
    }

    public init(connection: NATSConnectionOptions) {
        self.connection = connection
    }

    /// The subject filter of the stream: `<subjectPrefix>.>`.
    public var streamSubjects: String { subjectPrefix + ".>" }

    /// This machine's name with dots made underscores (a dot would split
    /// the subject token).
    public static func defaultHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return SubjectToken.sanitize(name.isEmpty ? "localhost" : name)
    }
}

/// One subject token: no `.`, `*`, `>` or whitespace.
enum SubjectToken {
    static func sanitize(_ text: String) -> String {
        guard !text.isEmpty else { return "_" }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            switch scalar {
            case ".", "*", ">", " ", "\t", "\r", "\n": "_"
            default: scalar
            }
        }))
    }
}

/// Subjects by severity: a handful of values, each sanitized and joined
/// once instead of per alert. Used by the forwarder's thread only.
final class SubjectCache: @unchecked Sendable {
    private let prefix: String
    private var bySeverity: [String: String] = [:]

    init(prefix: String) {
        self.prefix = prefix
    }

    func subject(forSeverity severity: String) -> String {
        if let subject = bySeverity[severity] { return subject }
        let subject = prefix + SubjectToken.sanitize(severity)
        if bySeverity.count < 64 { bySeverity[severity] = subject }
        return subject
    }
}
