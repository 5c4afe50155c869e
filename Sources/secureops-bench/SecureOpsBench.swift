import ArgumentParser
import Glibc

/// `secureops-bench`: measures secureopsd (or Redis, for comparison) on this
/// machine: pub/sub fan-out, request/response, accept storms and long soaks.
@main
struct SecureOpsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secureops-bench",
        abstract: "Measure secureopsd's throughput and latency on this machine, or Redis's on the same workloads.",
        discussion: """
            By default the tool starts its own secureopsd (found next to this executable, or --daemon PATH) \
            on a temporary socket and stops it afterwards. --socket PATH targets a running server instead. \
            --target redis runs the same fan-out (SUBSCRIBE/PUBLISH) and rpc (PING) workloads over RESP, \
            starting its own redis-server unless --socket is given.
            Exit status: 0 when every alert arrived once and in order and every request was answered; \
            1 when anything was lost, duplicated, reordered or refused; 2 when the run could not be set up.
            """,
        subcommands: [Fanout.self, Rpc.self, Connect.self, Soak.self, Forward.self])
}

/// Where the server comes from and how results are printed; every mode takes these.
struct CommonOptions: ParsableArguments {
    @Option(help: "The server: secureops or redis.")
    var target: Target = .secureops

    @Option(help: "Socket of a running server. Without it the tool starts its own on a temporary socket.")
    var socket: String?

    @Option(help: "The server executable the tool starts (default: secureopsd next to this tool, or redis-server on PATH).")
    var daemon: String?

    @Option(name: .customLong("server-cpus"), help: "Pin the server the tool starts to these CPUs (taskset list, e.g. 0).")
    var serverCPUs: String?

    @Option(name: .customLong("server-arg"), parsing: .unconditionalSingleValue, help: "An extra argument for the server the tool starts (repeatable).")
    var serverArguments: [String] = []

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @Flag(name: .customLong("no-progress"), help: "No live progress line (it is shown only when stderr is a terminal).")
    var noProgress = false

    var showProgress: Bool { !noProgress && isatty(STDERR_FILENO) == 1 }

    func startServer() throws -> ServerUnderTest {
        raiseDescriptorLimit()
        installInterruptHandler()
        return try ServerUnderTest(.init(target: target, socket: socket, daemon: daemon, serverCPUs: serverCPUs, serverArguments: serverArguments))
    }
}

func installInterruptHandler() {
    // A parent (a test runner, a shell script) may have started us with
    // signals blocked; the servers we start inherit the mask, and a server
    // that cannot see SIGTERM cannot be stopped politely.
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
    signal(SIGINT) { _ in interrupted.store(true, ordering: .relaxed) }
    signal(SIGPIPE, SIG_IGN)
}

/// Runs `body`, turning setup failures into exit status 2 with a message.
func runMeasured(_ body: () throws -> Bool) throws {
    let clean: Bool
    do {
        clean = try body()
    } catch let error as BenchError {
        writeStandardError("secureops-bench: \(error.description)\n")
        throw ExitCode(2)
    }
    if !clean { throw ExitCode(1) }
}

// MARK: - fanout

struct FanoutOptions: ParsableArguments {
    @Option(help: "Subscribers (connections that subscribe).")
    var subscribers: Int = 100

    @Option(help: "Bytes per delivered alert frame (the message is padded to reach it).")
    var size: Int = 256

    @Option(help: "Publishing connections.")
    var publishers: Int = 1

    @Option(help: "Publishes per second across all publishers (default: as fast as the window allows).")
    var rate: Double?

    @Option(help: "Publishes in flight (sent, not yet acknowledged) per publisher.")
    var window: Int = 64

    @Option(name: .customLong("drain-timeout"), help: "Seconds without a delivery, after the last publish, before the rest counts as lost.")
    var drainTimeout: Double = 10

    @Option(help: "How the tool reads its subscribers: io_uring (multishot recv into shared buffers) or epoll (readiness, then recv).")
    var receiver: Receiver = .ioUring

    @Option(help: "Alerts the publishers may run ahead of the average subscriber (0: no bound). Bounds the queue in the server, so latency at full speed is delivery time, not a queue the tool built.")
    var backlog: Int = 256

    @Option(name: .customLong("receive-buffers"), help: "io_uring receiver: 64 KiB buffers in its shared pool (a power of two up to 32768). Few stay in cache; too few make reads wait for a buffer (starvedReceives).")
    var receiveBuffers: Int = 128

    func validate(target: Target) throws {
        try validateFanout(subscribers: subscribers, size: size, publishers: publishers, rate: rate, window: window, target: target)
        guard backlog >= 0 else { throw ValidationError("--backlog must be 0 (no bound) or more") }
        guard receiveBuffers > 0 && receiveBuffers <= 32768 && receiveBuffers & (receiveBuffers - 1) == 0 else {
            throw ValidationError("--receive-buffers must be a power of two between 1 and 32768")
        }
    }
}

/// The checks fanout and soak share, with the message a person can act on.
func validateFanout(subscribers: Int, size: Int, publishers: Int, rate: Double?, window: Int, target: Target) throws {
    guard subscribers >= 0 else { throw ValidationError("--subscribers must be 0 or more") }
    guard publishers >= 1 && publishers <= 1000 else { throw ValidationError("--publishers must be between 1 and 1000") }
    guard window >= 1 && window <= 65_536 else { throw ValidationError("--window must be between 1 and 65536") }
    guard rate.map({ $0 > 0 }) ?? true else { throw ValidationError("--rate must be positive") }
    let minimum = Wire.minimumSize(target)
    guard size >= minimum && size <= 512 << 10 else {
        throw ValidationError("--size must be between \(minimum) (an alert with an empty message) and 524288 bytes")
    }
}

struct Fanout: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pub/sub fan-out: deliveries/s, publish-to-delivery latency, lost/duplicated/reordered/lagged counts.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var fanout: FanoutOptions

    @Option(help: "Alerts to publish in all.")
    var alerts: Int = 100_000

    func validate() throws {
        try fanout.validate(target: common.target)
        guard alerts >= 1 else { throw ValidationError("--alerts must be at least 1") }
    }

    func run() throws {
        try runMeasured {
            let server = try common.startServer()
            defer { server.stop() }
            var settings = FanoutSettings(
                subscribers: fanout.subscribers, alerts: alerts, duration: nil, size: fanout.size, publishers: fanout.publishers,
                rate: fanout.rate, window: fanout.window, drainTimeout: fanout.drainTimeout, progress: common.showProgress)
            settings.receiver = fanout.receiver
            settings.backlog = fanout.backlog > 0 ? fanout.backlog : nil
            settings.receiveBuffers = fanout.receiveBuffers
            let outcome = try FanoutRun(settings: settings, server: server).run()
            let report = FanoutReport.make(mode: "fanout", settings: settings, outcome: outcome, server: server)
            common.json ? report.printJSON() : report.printTable()
            return FanoutReport.isClean(outcome)
        }
    }
}

// MARK: - soak

struct Soak: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A long fan-out at a fixed rate: latency, deliveries/s and the server's memory, printed every interval.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Seconds to publish for.")
    var duration: Double = 60

    @Option(help: "Publishes per second.")
    var rate: Double = 1_000

    @Option(help: "Subscribers.")
    var subscribers: Int = 100

    @Option(help: "Bytes per delivered alert frame.")
    var size: Int = 256

    @Option(help: "Publishing connections.")
    var publishers: Int = 1

    @Option(help: "Publishes in flight per publisher.")
    var window: Int = 64

    @Option(help: "Seconds between printed rows.")
    var interval: Double = 1

    @Option(help: "Connections per second that connect, subscribe and hang up without reading while publishing goes on.")
    var churn: Double = 0

    @Option(help: "Extra subscribers that subscribe and never read a byte (the server should cut them off, not stall).")
    var stuck: Int = 0

    @Option(help: "How the tool reads its subscribers: io_uring or epoll.")
    var receiver: Receiver = .ioUring

    func validate() throws {
        try validateFanout(subscribers: subscribers, size: size, publishers: publishers, rate: rate, window: window, target: common.target)
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        guard interval > 0 else { throw ValidationError("--interval must be positive") }
        guard churn >= 0 && churn <= 10_000 else { throw ValidationError("--churn must be between 0 and 10000 connections per second") }
        guard stuck >= 0 else { throw ValidationError("--stuck must not be negative") }
    }

    func run() throws {
        try runMeasured {
            let server = try common.startServer()
            defer { server.stop() }
            if !common.json {
                var text = "soak: \(server.description), \(subscribers) subscribers, \(Format.grouped(rate)) alerts/s for \(Format.fixed(duration, 0)) s"
                if churn > 0 { text += ", \(Format.grouped(churn)) churning connections/s" }
                if stuck > 0 { text += ", \(stuck) never-reading subscribers" }
                print(text)
            }
            var settings = FanoutSettings(
                subscribers: subscribers, alerts: 0, duration: duration, size: size, publishers: publishers, rate: rate,
                window: window, progress: false, interval: interval, rowsToStandardError: common.json)
            settings.churn = churn
            settings.stuck = stuck
            settings.receiver = receiver
            // A soak publishes at its fixed rate whatever the readers do.
            settings.backlog = nil
            let outcome = try FanoutRun(settings: settings, server: server).run()
            var report = FanoutReport.make(mode: "soak", settings: settings, outcome: outcome, server: server)
            report.set("churned", outcome.churned)
            report.set("stuck", outcome.stuck)
            report.set("stuckClosedByServer", outcome.stuckClosedByServer)
            report.set("serverFdsSubscribed", outcome.serverDescriptorsSubscribed)
            report.set("serverFdsEnd", outcome.serverDescriptorsEnd)
            if churn > 0 { report.line("churned", "\(Format.grouped(Double(outcome.churned))) connections opened, subscribed and dropped") }
            if stuck > 0 { report.line("never-reading subscribers", "\(outcome.stuckClosedByServer) of \(outcome.stuck) cut off by the server") }
            if let subscribed = outcome.serverDescriptorsSubscribed, let end = outcome.serverDescriptorsEnd {
                report.line("server descriptors", "\(subscribed) subscribed, \(end) at the end")
            }
            common.json ? report.printJSON() : report.printTable()
            return FanoutReport.isClean(outcome)
        }
    }
}

// MARK: - connect

struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accept storm: N connections as fast as the server takes them, each subscribing at once; time to all subscribed.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Connections.")
    var connections: Int = 1_000

    func validate() throws {
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
    }

    func run() throws {
        try runMeasured {
            let server = try common.startServer()
            defer { server.stop() }
            let settings = FanoutSettings(subscribers: connections, alerts: 0, size: Wire.minimumSize(common.target), progress: common.showProgress)
            let outcome = try FanoutRun(settings: settings, server: server).run()
            var report = Report(title: "secureops-bench connect: \(server.description)")
            report.set("mode", "connect")
            report.set("target", common.target.rawValue)
            report.set("serverPid", server.pid.map(Int.init))
            report.set("connections", connections)
            report.set("subscribed", outcome.subscribed)
            report.set("connectSec", outcome.connectSeconds)
            report.set("allSubscribedSec", outcome.subscribeSeconds)
            report.set("connectionsPerSec", Double(connections) / max(outcome.subscribeSeconds, 1e-9))
            report.set("deliveriesPerSec", 0.0)
            report.set("requestsPerSec", Double(outcome.subscribed) / max(outcome.subscribeSeconds, 1e-9))
            report.set("lost", 0)
            report.latency(outcome.latency)
            report.line("connections", Format.grouped(Double(connections)))
            report.line("all connect() calls returned", Format.fixed(outcome.connectSeconds * 1000, 1) + " ms")
            report.line("all subscribed", Format.fixed(outcome.subscribeSeconds * 1000, 1) + " ms"
                + "  (\(Format.rate(Double(connections) / max(outcome.subscribeSeconds, 1e-9))) connections/s)")
            FanoutReport.memory(&report, outcome: outcome)
            common.json ? report.printJSON() : report.printTable()
            return outcome.subscribed == connections && outcome.disconnected == 0
        }
    }
}

// MARK: - rpc

struct Rpc: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Request/response: requests/s and latency percentiles at C connections x pipeline P.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Connections.")
    var connections: Int = 100

    @Option(help: "Requests in all.")
    var requests: Int = 1_000_000

    @Option(help: "Requests written together per connection before waiting for their responses.")
    var pipeline: Int = 1

    @Option(help: "ping, status or publish (Redis: ping or publish).")
    var request: RequestKind = .ping

    @Option(help: "Bytes per alert for --request publish.")
    var size: Int = 256

    func validate() throws {
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
        guard pipeline >= 1 && pipeline <= 4096 else { throw ValidationError("--pipeline must be between 1 and 4096") }
        if common.target == .redis && request == .status {
            throw ValidationError("--request status has no Redis equivalent; compare with --request ping or --request publish")
        }
    }

    func run() throws {
        try runMeasured {
            let server = try common.startServer()
            defer { server.stop() }
            let settings = RpcSettings(connections: connections, requests: requests, pipeline: pipeline, kind: request, progress: common.showProgress)
            let outcome = try RpcRun(settings: settings, server: server, size: size).run()
            var report = Report(title: "secureops-bench rpc: \(server.description)")
            let rate = Double(outcome.completed + outcome.errors) / max(outcome.elapsedSeconds, 1e-9)
            report.set("mode", "rpc")
            report.set("target", common.target.rawValue)
            report.set("serverPid", server.pid.map(Int.init))
            report.set("request", request.rawValue)
            report.set("connections", connections)
            report.set("pipeline", pipeline)
            report.set("requests", outcome.completed + outcome.errors)
            report.set("errors", outcome.errors)
            report.set("firstError", outcome.firstError)
            report.set("elapsedSec", outcome.elapsedSeconds)
            report.set("requestsPerSec", rate)
            report.set("deliveriesPerSec", 0.0)
            report.set("lost", outcome.unanswered)
            report.latency(outcome.latency)
            report.line("requests", "\(Format.grouped(Double(outcome.completed + outcome.errors))) \(request.rawValue), \(connections) connections x pipeline \(pipeline)")
            report.line("requests/s", Format.rate(rate))
            if outcome.errors > 0 { report.line("errors", "\(outcome.errors) (first: \(outcome.firstError ?? ""))") }
            if outcome.unanswered > 0 { report.line("unanswered", "\(outcome.unanswered)") }
            FanoutReport.cpu(&report, tool: outcome.toolCPUSeconds, server: outcome.serverCPUSeconds, elapsed: outcome.elapsedSeconds)
            report.set("serverRssBytes", outcome.serverRSS)
            if outcome.stalled { report.line("stalled", "no response for \(Int(settings.stallTimeout)) s: the run was cut short") }
            report.set("stalled", outcome.stalled)
            report.set("interrupted", outcome.interruptedByUser)
            common.json ? report.printJSON() : report.printTable()
            return outcome.errors == 0 && outcome.unanswered == 0 && !outcome.stalled && !outcome.interruptedByUser
        }
    }
}

// MARK: - Fan-out reports

enum FanoutReport {
    static func make(mode: String, settings: FanoutSettings, outcome: FanoutOutcome, server: ServerUnderTest) -> Report {
        var report = Report(title: "secureops-bench \(mode): \(server.description)")
        let deliveriesPerSec = Double(outcome.deliveries) / max(outcome.elapsedSeconds, 1e-9)
        let publishesPerSec = Double(outcome.published) / max(outcome.publishSeconds, 1e-9)
        let frameBytes = outcome.deliveries > 0 ? Double(outcome.deliveredBytes) / Double(outcome.deliveries) : 0
        report.set("mode", mode)
        report.set("target", server.target.rawValue)
        report.set("serverPid", server.pid.map(Int.init))
        report.set("subscribers", settings.subscribers)
        report.set("publishers", settings.publishers)
        report.set("window", settings.window)
        report.set("rate", settings.rate)
        report.set("sizeBytes", settings.size)
        report.set("frameBytes", frameBytes)
        report.set("published", outcome.published)
        report.set("publishErrors", outcome.publishErrors)
        report.set("firstPublishError", outcome.firstPublishError)
        report.set("deliveries", outcome.deliveries)
        report.set("expectedDeliveries", outcome.published * UInt64(settings.subscribers))
        report.set("elapsedSec", outcome.elapsedSeconds)
        report.set("deliveriesPerSec", deliveriesPerSec)
        report.set("requestsPerSec", publishesPerSec)
        report.set("lost", outcome.lost)
        report.set("duplicated", outcome.duplicated)
        report.set("reordered", outcome.reordered)
        report.set("lagEvents", outcome.lagEvents)
        report.set("laggedSkipped", outcome.laggedSkipped)
        report.set("lagNoticeMismatches", outcome.lagNoticeMismatches)
        report.set("unexpectedFrames", outcome.unexpectedFrames)
        report.set("firstUnexpectedFrame", outcome.firstUnexpectedFrame)
        report.set("disconnected", outcome.disconnected)
        report.set("recvCalls", outcome.recvCalls)
        report.set("receiver", settings.receiver.rawValue)
        report.set("backlog", settings.backlog)
        report.set("maxBacklog", outcome.maxBacklog)
        report.set("starvedReceives", outcome.starvedReceives)
        report.set("connectSec", outcome.connectSeconds)
        report.set("allSubscribedSec", outcome.subscribeSeconds)

        report.line("subscribers", "\(Format.grouped(Double(settings.subscribers))) (all subscribed in \(Format.fixed(outcome.subscribeSeconds * 1000, 0)) ms)")
        var publishing = "\(Format.grouped(Double(outcome.published))) alerts of \(Format.fixed(frameBytes, 0)) bytes, \(settings.publishers) publisher(s), window \(settings.window)"
        if let rate = settings.rate { publishing += ", \(Format.grouped(rate))/s" }
        report.line("published", publishing + " (\(Format.rate(publishesPerSec))/s)")
        if outcome.publishErrors > 0 { report.line("publish errors", "\(outcome.publishErrors) (first: \(outcome.firstPublishError ?? ""))") }
        report.line("deliveries", "\(Format.grouped(Double(outcome.deliveries))) in \(Format.fixed(outcome.elapsedSeconds, 3)) s")
        report.line("deliveries/s", Format.rate(deliveriesPerSec))
        report.latency(outcome.latency)
        report.line("lost / duplicated / reordered", "\(outcome.lost) / \(outcome.duplicated) / \(outcome.reordered)")
        report.line("lagged", "\(outcome.lagEvents) notices, \(outcome.laggedSkipped) alerts skipped (announced)"
            + (outcome.lagNoticeMismatches > 0 ? ", \(outcome.lagNoticeMismatches) notices that disagree with what arrived" : ""))
        if outcome.unexpectedFrames > 0 { report.line("unexpected frames", "\(outcome.unexpectedFrames) (first: \(outcome.firstUnexpectedFrame ?? ""))") }
        if outcome.disconnected > 0 { report.line("disconnected by the server", "\(outcome.disconnected) subscribers") }
        cpu(&report, tool: outcome.toolCPUSeconds, server: outcome.serverCPUSeconds, elapsed: outcome.elapsedSeconds)
        memory(&report, outcome: outcome)
        if outcome.stalled { report.line("stalled", "deliveries stopped before everything arrived; the rest counts as lost") }
        if outcome.interruptedByUser { report.line("interrupted", "by Ctrl-C; the counts cover what was measured until then") }
        report.set("stalled", outcome.stalled)
        report.set("interrupted", outcome.interruptedByUser)
        return report
    }

    static func cpu(_ report: inout Report, tool: Double, server: Double?, elapsed: Double) {
        let toolShare = tool / max(elapsed, 1e-9) * 100
        report.set("toolCpuSec", tool)
        report.set("toolCpuPercent", toolShare)
        report.set("serverCpuPercent", server.map { $0 / max(elapsed, 1e-9) * 100 })
        var text = "tool \(Format.fixed(toolShare, 0))% of a core"
        if let server { text += ", server \(Format.fixed(server / max(elapsed, 1e-9) * 100, 0))%" }
        if toolShare > 90 { text += " (the tool was near its core's limit: the figures may be the tool's, not the server's)" }
        report.line("CPU", text)
    }

    static func memory(_ report: inout Report, outcome: FanoutOutcome) {
        report.set("serverRssBeforeBytes", outcome.serverRSSBefore)
        report.set("serverRssSubscribedBytes", outcome.serverRSSSubscribed)
        report.set("serverRssEndBytes", outcome.serverRSSEnd)
        var perSubscriber: Double?
        if let before = outcome.serverRSSBefore, let after = outcome.serverRSSSubscribed, outcome.subscribers > 0 {
            perSubscriber = Double(after - before) / Double(outcome.subscribers)
        }
        report.set("rssPerSubscriberBytes", perSubscriber)
        if let before = outcome.serverRSSBefore, let after = outcome.serverRSSSubscribed {
            var text = "\(Format.mebibytes(before)) before, \(Format.mebibytes(after)) subscribed"
            if let perSubscriber { text += " (\(Format.grouped(perSubscriber)) bytes per idle subscriber)" }
            if let end = outcome.serverRSSEnd { text += ", \(Format.mebibytes(end)) at the end" }
            report.line("server RSS", text)
        }
    }

    static func isClean(_ outcome: FanoutOutcome) -> Bool {
        outcome.lost == 0 && outcome.reordered == 0 && outcome.duplicated == 0 && outcome.publishErrors == 0
            && outcome.lagNoticeMismatches == 0 && outcome.disconnected == 0 && !outcome.stalled && !outcome.interruptedByUser
    }
}

extension Receiver: ExpressibleByArgument {}
