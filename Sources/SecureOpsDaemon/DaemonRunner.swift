import Dispatch
import Glibc
import Logging
import SecureOpsEngine

/// Starts `secureopsd`, serves until SIGTERM/SIGINT, reloads the policy on
/// SIGHUP, and shuts down gracefully.
public enum DaemonRunner {
    /// Runs the daemon in the calling (main) thread; returns the exit status.
    public static func run(_ options: DaemonOptions) -> Int32 {
        // Block the signals we wait for before any thread exists, so every
        // thread inherits the mask and only sigwait() below receives them.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)

        var logger = Logger(label: "secureopsd")
        logger.logLevel = options.logLevel

        do {
            try SecureFile.ensureDirectory(options.stateDirectory, mode: 0o700)
        } catch {
            logger.critical("cannot prepare the state directory: \(error)")
            return 1
        }
        let policy: Policy
        if let path = options.policyPath {
            do {
                policy = try PolicyLoader.load(path: path)
            } catch {
                logger.critical("cannot start: \(error)")
                return 1
            }
        } else {
            policy = .builtIn
            logger.info("no policy file: only root and uid \(getuid()) may connect (pass --policy FILE to grant others)")
        }

        let services = DaemonServices(options: options, policy: policy, logger: logger)
        var configuration = EngineConfiguration(socketPath: options.socketPath)
        configuration.socketMode = options.socketMode
        configuration.limits = services.engineLimits(for: policy)
        configuration.receiveBufferCount = options.engine.receiveBufferCount
        configuration.completionQueueEntries = options.engine.completionQueueEntries
        configuration.shutdownGracePeriod = .milliseconds(Int64(options.engine.shutdownGraceSeconds * 1000))
        let engine: Engine<SecureOpsHandler>
        do {
            var engineLogger = Logger(label: "secureops.engine")
            engineLogger.logLevel = options.logLevel
            engine = try Engine<SecureOpsHandler>(configuration: configuration, logger: engineLogger)
            services.attach(engine)
            try engine.start(handler: SecureOpsHandler(services: services))
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
        let kill = services.killSwitch.current
        if kill.killed {
            logger.warning("kill switch is tripped (\(kill.reason ?? "no reason")); it stays tripped until 'secureopsd reset-kill'")
        }
        logger.notice("secureopsd \(services.version) serving", metadata: [
            "socket": "\(options.socketPath)", "pid": "\(getpid())", "policyVersion": "\(policy.version)",
            "stateDir": "\(options.stateDirectory)",
        ])

        while true {
            var received: Int32 = 0
            guard sigwait(&signals, &received) == 0 else { continue }
            if received == SIGHUP {
                logger.info("SIGHUP: reloading policy")
                DispatchQueue.global().async {
                    _ = try? services.reloadPolicy()
                }
                continue
            }
            logger.notice("signal \(received): shutting down")
            break
        }
        engine.requestShutdown()
        engine.waitUntilStopped()
        logger.notice("secureopsd stopped")
        return 0
    }
}
