import Glibc
import Logging
import SecureOpsEngine
import SecureOpsEngineService
import ServiceLifecycle

// presence-server --socket PATH [--snapshot FILE]
//
// Serves the presence protocol (README.md) on a Unix socket until SIGTERM or
// SIGINT, then shuts down gracefully: requests already received are
// answered, watchers get every queued change, the socket file is removed.

var arguments = CommandLine.arguments.dropFirst()
var socketPath = "/tmp/presence-\(getuid()).sock"
var snapshotPath = "presence-snapshot.json"
while let argument = arguments.popFirst() {
    switch (argument, arguments.popFirst()) {
    case ("--socket", let value?): socketPath = value
    case ("--snapshot", let value?): snapshotPath = value
    default:
        print("usage: presence-server --socket PATH [--snapshot FILE]")
        exit(2)
    }
}

LoggingSystem.bootstrap(StreamLogHandler.standardError)
let logger = Logger(label: "presence-server")

let engine: Engine<PresenceHandler>
do {
    var configuration = EngineConfiguration(socketPath: socketPath)
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
logger.notice("presence-server serving on \(socketPath)")

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
