import ArgumentParser
import Glibc
import SecureOpsAuditLog
import SecureOpsClient
import SecureOpsWire
import SecureOpsSystem

@main
struct SecureOpsCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secureops",
        abstract: "Talk to secureopsd over its control socket.",
        subcommands: [Ping.self, Status.self, Subscribe.self, Alerts.self, Publish.self, Kill.self, Audit.self, Reload.self, VerifyLog.self, Tail.self])
}

/// Options every subcommand takes.
struct Connection: ParsableArguments {
    @Option(help: "Socket path (default per WIRE.md).")
    var socket: String?

    @Flag(help: "Print the raw frames the daemon sent.")
    var json = false

    @Option(name: .customLong("server-uid"), help: "The uid secureopsd runs as, when it is neither root, you, nor the owner of its private socket directory (or set SECUREOPS_SERVER_UID). Any other server is refused.")
    var serverUID: UInt32?

    func connect() throws -> SecureOpsConnection {
        do {
            let trust = serverUID.map { ServerTrust(expectedUID: $0) } ?? .fromEnvironment
            return try SecureOpsConnection.connect(to: socket ?? WireDefaults.socketPath(), trust: trust)
        } catch {
            fail("\(error)")
        }
    }
}

/// Prints to stderr and exits non-zero.
func fail(_ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(message + "\n")
    exit(status)
}

enum FileHandle {
    case standardError
    func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Sends one request; prints the raw reply with --json, otherwise returns it.
/// An `err` reply prints its message and exits 1.
func exchange(_ request: IpcRequest, _ options: Connection) throws -> (IpcResponse, [UInt8]) {
    let connection = try options.connect()
    do {
        try connection.send(request)
        while true {
            guard let frame = try connection.readFrame(timeout: 60) else {
                fail("secureopsd closed the connection without replying")
            }
            let response = try FastJSONDecoder().decode(IpcResponse.self, from: frame)
            if case .alert = response { continue }
            if options.json { print(String(decoding: frame, as: UTF8.self)) }
            if case .err(let message, _, _) = response {
                if !options.json { fail("error: \(message)") }
                exit(1)
            }
            return (response, frame)
        }
    } catch let error as IpcError {
        fail("\(error)")
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the daemon answers.")
    @OptionGroup var options: Connection

    func run() throws {
        let started = monotonic()
        _ = try exchange(.ping, options)
        if !options.json { print("ok (\(formatMilliseconds(monotonic() - started)))") }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the daemon's status and counters.")
    @OptionGroup var options: Connection

    func run() throws {
        let (_, frame) = try exchange(.status, options)
        guard !options.json else { return }
        let status = try FastJSONDecoder().decode(MonitorStatus.self, from: frame)
        let rows: [(String, String)] = [
            ("running", status.running ? "yes" : "no"),
            ("kill switch", status.killed ? "TRIPPED\(status.killReason.map { ": \($0)" } ?? "")" : "not tripped"),
            ("version", status.version),
            ("pid", "\(status.pid)"),
            ("uptime", formatDuration(status.uptimeSecs)),
            ("connections", "\(status.connections)\(status.connectionCapacity.map { " of \($0)" } ?? "")"),
            ("subscribers", "\(status.subscribers)"),
            ("alerts published", "\(status.alertsPublished)"),
            ("alerts retained", "\(status.alertsRetained)"),
            ("last sequence", "\(status.lastSequence)"),
            ("lag events", "\(status.lagEvents)"),
            ("slow disconnects", "\(status.slowDisconnects ?? 0)"),
            ("policy version", "\(status.policyVersion)"),
            ("io_uring", status.ioUring ?? "unknown"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        for (label, value) in rows {
            print(label.padding(to: width) + "  " + value)
        }
    }
}

struct Subscribe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stream alerts until interrupted.")
    @OptionGroup var options: Connection
    @Option(help: "Replay retained alerts with a greater sequence first.")
    var since: UInt64?

    func run() throws {
        // Streams until interrupted: make sure SIGINT/SIGTERM can interrupt
        // even if the parent started us with them blocked.
        var interrupts = sigset_t()
        sigemptyset(&interrupts)
        sigaddset(&interrupts, SIGINT)
        sigaddset(&interrupts, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &interrupts, nil)
        let connection = try options.connect()
        do {
            try connection.send(.subscribe(since: since))
            var subscribed = false
            while let frame = try connection.readFrame() {
                if options.json {
                    print(String(decoding: frame, as: UTF8.self))
                    fflush(nil)
                }
                let response = try FastJSONDecoder().decode(IpcResponse.self, from: frame)
                switch response {
                case .ok:
                    subscribed = true
                case .err(let message, let skipped, let resumeAt):
                    if !subscribed { fail("error: \(message)") }
                    if !options.json {
                        if let skipped, let resumeAt {
                            print("!! lagged: skipped \(skipped) alerts, resuming at \(resumeAt)")
                        } else {
                            print("!! \(message)")
                        }
                    }
                case .alert(let alert):
                    if !options.json { print(formatAlert(alert)) }
                }
                if !options.json { fflush(nil) }
            }
            fail("secureopsd closed the subscription")
        } catch let error as IpcError {
            fail("\(error)")
        }
    }
}

struct Alerts: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the most recent retained alerts.")
    @OptionGroup var options: Connection
    @Option(help: "How many (default 100).")
    var limit: Int?

    func run() throws {
        let (_, frame) = try exchange(.alerts(limit: limit), options)
        guard !options.json else { return }
        let result = try FastJSONDecoder().decode(AlertsResult.self, from: frame)
        if result.alerts.isEmpty { print("no alerts retained") }
        for alert in result.alerts { print(formatAlert(alert)) }
    }
}

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish one alert to every subscriber.")
    @OptionGroup var options: Connection
    @Option(help: "info, low, medium, high or critical.")
    var severity: String
    @Option(help: "What raised the alert.")
    var source: String
    @Option(help: "What happened.")
    var message: String
    @Option(help: "A JSON object with details.")
    var details: String?

    func run() throws {
        guard let level = Severity(rawValue: severity) else {
            fail("--severity must be one of info, low, medium, high, critical")
        }
        var raw: RawJSON?
        if let details {
            do {
                raw = try RawJSON(validating: Array(details.utf8))
            } catch {
                fail("--details is not valid JSON: \(error)")
            }
            guard raw!.isObject else { fail("--details must be a JSON object") }
        }
        let (_, frame) = try exchange(.publish(AlertInput(severity: level, source: source, message: message, details: raw)), options)
        if !options.json {
            print("published as sequence \(try FastJSONDecoder().decode(PublishResult.self, from: frame).sequence)")
        }
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Trip the kill switch.")
    @OptionGroup var options: Connection
    @Option(help: "Why; recorded in the audit log and sent to every subscriber.")
    var reason: String?

    func run() throws {
        let (_, frame) = try exchange(.kill(reason: reason), options)
        if !options.json {
            let result = try FastJSONDecoder().decode(KillResult.self, from: frame)
            print("kill switch tripped; alert sequence \(result.sequence)")
        }
    }
}

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the audit checks.")
    @OptionGroup var options: Connection
    @Flag(help: "Also run the expensive checks.")
    var deep = false
    @Flag(help: "Repair what is safe to repair (permissions).")
    var fix = false

    func run() throws {
        let (_, frame) = try exchange(.audit(AuditOptions(deep: deep, fix: fix, json: options.json)), options)
        guard !options.json else { return }
        let report = try FastJSONDecoder().decode(AuditReport.self, from: frame)
        print(formatAuditTable(report))
        if report.summary.fail > 0 || report.summary.error > 0 { throw ExitCode(1) }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reload the policy file.")
    @OptionGroup var options: Connection

    func run() throws {
        let (_, frame) = try exchange(.reloadPolicy, options)
        if !options.json {
            print("policy version \(try FastJSONDecoder().decode(ReloadResult.self, from: frame).policyVersion) in force")
        }
    }
}

struct VerifyLog: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-log", abstract: "Verify the daemon's signed audit log.",
        discussion: """
            Checks every record's HMAC, sequence number and link to the record before it, and the \
            end of the log against audit.head. Needs the key (audit.key in the state directory), so \
            run it as root or as the daemon's user. Exit status: 0 intact, 1 tampered or damaged \
            (the first bad record is named), 2 the log could not be checked.
            """)
    @Option(name: .customLong("state-dir"), help: "The daemon's state directory (holds audit.log, audit.key, audit.head).")
    var stateDir: String
    @Option(help: "Verify this file instead of the state directory's audit.log (e.g. a log moved aside as audit.log.broken-*); its end is not checked against audit.head.")
    var log: String?
    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() throws {
        let directory: OpenedDirectory
        do {
            directory = try OpenedDirectory.open(stateDir)
        } catch {
            fail("verify-log: cannot open the state directory: \(error)", status: 2)
        }
        let verifier: AuditLogVerifier
        do {
            verifier = try AuditLogVerifier.forStateDirectory(directory)
        } catch {
            fail("verify-log: cannot read the key: \(error)", status: 2)
        }
        let report: AuditLogVerifier.Report
        do {
            if let log {
                report = try verifier.verify(logPath: log)
            } else {
                report = try verifier.verify(stateDirectory: directory)
            }
        } catch {
            fail("verify-log: \(error)", status: 2)
        }
        if json {
            print(verifyLogJSON(report))
        } else {
            print(verifyLogText(report))
        }
        if !report.isIntact { throw ExitCode(1) }
    }
}
