import Glibc
import Logging
import SecureOpsEngine
import SecureOpsEngineService
import ServiceLifecycle

// presence-server --socket PATH [--tcp HOST:PORT]... [--snapshot FILE]
//
// Serves the presence protocol (README.md) on a Unix socket, and on TCP
// addresses if asked (loopback peers only), until SIGTERM or SIGINT, then
// shuts down gracefully: requests already received are answered, watchers
// get every queued change, the socket file is removed.

var arguments = CommandLine.arguments.dropFirst()
var socketPath = "/tmp/presence-\(getuid()).sock"
var tcpAddresses: [ListenAddress] = []
var snapshotPath = "presence-snapshot.json"
func usage() -> Never {
    print("usage: presence-server --socket PATH [--tcp HOST:PORT]... [--snapshot FILE]")
    exit(2)
}
while let argument = arguments.popFirst() {
    switch (argument, arguments.popFirst()) {
    case ("--socket", let value?): socketPath = value
    case ("--snapshot", let value?): snapshotPath = value
    case ("--tcp", let value?):
        // HOST:PORT, with an IPv6 host in brackets: [::1]:7070.
        guard let colon = value.lastIndex(of: ":"), let port = UInt16(value[value.index(after: colon)...]) else { usage() }
        var host = value[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        tcpAddresses.append(.tcp(host: String(host), port: port))
    default:
        usage()
    }
}

LoggingSystem.bootstrap(StreamLogHandler.standardError)
let logger = Logger(label: "presence-server")

let engine: Engine<PresenceHandler>
do {
    var configuration = EngineConfiguration(listeners: [.unix(path: socketPath)] + tcpAddresses)
    configuration.socketMode = 0o600
    configuration.limits.maxFrameBytes = 16 << 10
    configuration.limits.retainedFrames = 4096
    configuration.threadName = "presence-ring"
    engine = try Engine(configuration: configuration, logger: logger)
    try engine.start(handler: PresenceHandler(snapshotPath: snapshotPath))
} catch {
    // Socket path too long or in use, io_uring unavailable: the engine's
    // error says which and what to do.
    logger.critical("cannot start: \(error)")
    exit(1)
}
logger.notice("presence-server serving on \(engine.boundAddresses.map(\.description).joined(separator: ", "))")

let group = ServiceGroup(configuration: .init(
    services: [.init(service: engine)],
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: logger))
do {
    try await group.run()
} catch {
    logger.error("stopped with an error: \(error)")
    exit(1)
}
logger.notice("presence-server stopped")
