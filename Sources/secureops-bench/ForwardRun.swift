import ArgumentParser
import Glibc
import SecureOpsClient

// MARK: - forward

/// Alerts from `publish` to their JetStream acknowledgement, through a
/// secureopsd the tool starts with `--forward-nats`, while the same alerts
/// fan out to local subscribers. Each run uses a stream and subject prefix
/// of its own, so runs against one server do not meet.
struct Forward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forwarding to NATS JetStream: alerts/s from publish to stream acknowledgement, with local fan-out going on.")

    @OptionGroup var common: CommonOptions

    @Option(help: "NATS server URL(s), comma-separated: the daemon's --forward-nats.")
    var nats: String

    @Option(help: "Replicas of the stream the daemon creates.")
    var replicas = 1

    @Option(help: "Alerts to publish in all.")
    var alerts = 100_000

    @Option(help: "Bytes per delivered alert frame.")
    var size = 256

    @Option(help: "Local subscribers receiving the same alerts meanwhile.")
    var subscribers = 1000

    @Option(help: "Publishes in flight (sent, not yet answered).")
    var window = 64

    @Option(name: .customLong("forward-timeout"), help: "Seconds to wait, after the last publish, for the stream to acknowledge everything.")
    var forwardTimeout: Double = 120

    func validate() throws {
        guard common.target == .secureops else { throw ValidationError("forward measures secureopsd (--target secureops)") }
        guard common.socket == nil else { throw ValidationError("forward starts its own secureopsd (with --forward-nats): drop --socket") }
        guard alerts >= 1, subscribers >= 1, (1...5).contains(replicas) else { throw ValidationError("--alerts and --subscribers at least 1, --replicas 1 to 5") }
    }

    func run() throws {
        try runMeasured {
            var options = common
            let run = "\(getpid())x\(UInt32.random(in: 0...UInt32.max))"
            options.serverArguments += [
                "--forward-nats", nats, "--forward-replicas", String(replicas),
                "--forward-stream", "BENCH_\(run)", "--forward-subject-prefix", "bench\(run).alerts",
            ]
            let server = try options.startServer()
            defer { server.stop() }
            let settings = FanoutSettings(
                subscribers: subscribers, alerts: alerts, duration: nil, size: size, publishers: 1,
                rate: nil, window: window, drainTimeout: 10, progress: common.showProgress)
            let started = monotonicNanos()
            let outcome = try FanoutRun(settings: settings, server: server).run()

            let connection = try SecureOpsConnection.connect(to: server.socketPath)
            defer { connection.close() }
            let last = try connection.status().lastSequence
            let deadline = monotonicNanos() + UInt64(forwardTimeout * 1e9)
            var forwarder = try connection.status().forwarder
            while (forwarder?.acknowledgedSequence ?? 0) < last && monotonicNanos() < deadline {
                usleep(1000)
                forwarder = try connection.status().forwarder
            }
            let finished = monotonicNanos()
            let acknowledged = forwarder?.acknowledgedSequence ?? 0
            // The forwarding clock starts with the first publish, after the
            // subscribers connected and subscribed.
            let forwardSeconds = Double(finished - started) / 1e9 - outcome.connectSeconds - outcome.subscribeSeconds

            var report = FanoutReport.make(mode: "forward", settings: settings, outcome: outcome, server: server)
            report.set("replicas", replicas)
            // The stream this run made, for whoever cleans up after it.
            report.set("stream", "BENCH_\(run)")
            report.set("acknowledged", acknowledged)
            report.set("forwardSec", forwardSeconds)
            report.set("forwardedPerSec", Double(acknowledged) / max(forwardSeconds, 1e-9))
            report.set("forwarderState", forwarder?.state)
            report.set("forwarderError", forwarder?.lastError)
            report.line("forwarded", "\(Format.grouped(Double(acknowledged))) of \(Format.grouped(Double(last))) in \(Format.fixed(forwardSeconds, 2)) s: \(Format.rate(Double(acknowledged) / max(forwardSeconds, 1e-9)))/s (replicas \(replicas))")
            common.json ? report.printJSON() : report.printTable()
            return FanoutReport.isClean(outcome) && acknowledged == last
        }
    }
}
