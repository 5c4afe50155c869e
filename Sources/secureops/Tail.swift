import ArgumentParser
import Glibc
import SecureOpsClient
import SecureOpsForwarder
import Synchronization

/// Set by SIGINT/SIGTERM: the loop stops between fetches and hands the
/// fetched-but-unprinted alerts back, so a durable consumer resumes in order.
private let interrupted = Atomic<Bool>(false)

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the alert frames forwarded to a NATS JetStream stream, in order.")

    @Option(help: "NATS server URL(s), comma-separated (nats://host:port, tls://host:port).")
    var nats: String

    @Option(help: "Subject filter within the alert stream.")
    var subject = "secureops.alerts.>"

    @Option(help: "Durable consumer name: a later tail with the same name resumes after the last alert printed.")
    var durable: String?

    @Option(name: .customLong("ca-file"), help: "PEM CA file to trust (TLS).")
    var caFile: String?

    @Option(help: "NATS .creds file.")
    var creds: String?

    @Flag(help: "Print each alert frame as the stream holds it, instead of a line per alert.")
    var json = false

    func run() throws {
        var connection = NATSConnectionOptions(servers: nats.split(separator: ",").map { String($0) })
        connection.caFile = caFile
        connection.credentialsFile = creds
        connection.name = "secureops-tail"
        let tail = try JetStreamTail(connection: connection, subject: subject, durable: durable)
        defer { tail.close() }
        // A parent may start us with these blocked (a blocked mask survives
        // exec: a thread pool's worker starting us passes its own on), and
        // a blocked SIGTERM would never reach the handler.
        var handled = sigset_t()
        sigemptyset(&handled)
        for signal in [SIGINT, SIGTERM] {
            Glibc.signal(signal) { _ in interrupted.store(true, ordering: .relaxed) }
            sigaddset(&handled, signal)
        }
        pthread_sigmask(SIG_UNBLOCK, &handled, nil)
        while !interrupted.load(ordering: .relaxed) {
            guard let message = try tail.next(timeout: .milliseconds(500)) else { continue }
            if json {
                print(String(decoding: message.body, as: UTF8.self))
            } else if case .alert(let alert)? = try? FastJSONDecoder().decode(IpcResponse.self, from: message.body) {
                // As `secureops subscribe` prints it, after the host it came from.
                print(sanitized(message.headers["Secureops-Host"] ?? "?") + "  " + formatAlert(alert))
            } else {
                print("!! not an alert frame on \(sanitized(message.subject)): \(sanitized(String(decoding: message.body.prefix(200), as: UTF8.self)))")
            }
            fflush(nil)
        }
    }
}
