import Dispatch
import Glibc
import Logging
import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsForwarder
import SecureOpsSystem

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

        // Socket problems first, before the state directory is touched: a
        // second daemon holds its audit log locked, and a daemon that cannot
        // serve has nothing to record.
        if options.socketPath.utf8.count > 107 {
            logger.critical("cannot start: \(EngineError.socketPathTooLong(path: options.socketPath, bytes: options.socketPath.utf8.count))")
            return 1
        }
        if DaemonProbe.isServing(socketPath: options.socketPath) {
            logger.critical("cannot start: \(EngineError.socketInUse(path: options.socketPath))")
            return 1
        }
        let daemonUID = geteuid()
        let state: StateDirectory.Opened
        do {
            state = try StateDirectory.open(options.stateDirectory, owner: daemonUID)
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
        if let mode = state.tightenedFrom {
            logger.notice("state directory \(options.stateDirectory) had mode 0\(String(mode, radix: 8)); set to 0700")
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
        // Without its tamper-evident log the daemon does not start: an
        // attacker who could break the log and restart the daemon would
        // otherwise act unrecorded. (Write failures later do not stop it.)
        let auditLog: AuditLog
        do {
            let reportLogger = logger
            auditLog = try AuditLog.open(directory: state.directory, owner: daemonUID) { message in reportLogger.error("\(message)") }
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
        logAuditLogNotes(auditLog, logger: logger)
        let killSwitch: KillSwitch
        do {
            killSwitch = try KillSwitch(directory: state.directory, owner: daemonUID) { message in logger.error("\(message)") }
        } catch {
            logger.critical("cannot start: \(error)")
            auditLog.close(finalEvent: "start-failed", fields: ["pid": .number(JSONNumber(Int(getpid()))), "error": .string(AuditText.clip("\(error)"))])
            return 1
        }

        let journal: (Journal, JournalRecovery)?
        do {
            journal = try openJournal(options, state: state.directory, owner: daemonUID, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            auditLog.close(finalEvent: "start-failed", fields: ["pid": .number(JSONNumber(Int(getpid()))), "error": .string(AuditText.clip("\(error)"))])
            return 1
        }

        let services = DaemonServices(options: options, policy: policy, logger: logger, auditLog: auditLog, killSwitch: killSwitch)
        // Recorded before the first connection is accepted, so every record
        // about a request comes after the start it belongs to.
        let kill = services.killSwitch.current
        services.trail.daemonStarted(pid: getpid(), version: services.version, policy: policy, options: options, killSwitch: kill)
        if let (_, recovery) = journal { services.trail.journalRecovered(recovery) }
        let forwarder: JetStreamForwarder?
        do {
            forwarder = try makeForwarder(options, journal: journal?.0, state: state.directory, services: services, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            services.trail.daemonFailedToStart(error: "\(error)")
            return 1
        }
        raiseDescriptorLimit(logger: logger)
        var configuration = EngineConfiguration(socketPath: options.socketPath)
        configuration.ioBackend = options.engine.ioBackend
        configuration.journalWriter = options.engine.journalWriter
        configuration.socketMode = options.socketMode
        configuration.limits = services.engineLimits(for: policy)
        configuration.receiveBufferCount = options.engine.receiveBufferCount
        configuration.completionQueueEntries = options.engine.completionQueueEntries
        configuration.shutdownGracePeriod = .milliseconds(Int64(options.engine.shutdownGraceSeconds * 1000))
        configuration.journal = journal?.0
        // Weak: the services hold the engine, which holds its configuration.
        configuration.journalHealthChanged = { [weak services] health in services?.journalHealthChanged(health) }
        if let forwarder {
            configuration.journalAdvanced = { through in forwarder.notify(lastSequence: through) }
        }
        let engine: Engine<SecureOpsHandler>
        do {
            var engineLogger = Logger(label: "secureops.engine")
            engineLogger.logLevel = options.logLevel
            engine = try Engine<SecureOpsHandler>(configuration: configuration, logger: engineLogger)
            services.attach(engine)
            try engine.start(handler: SecureOpsHandler(services: services))
        } catch {
            logger.critical("cannot start: \(error)")
            services.trail.daemonFailedToStart(error: "\(error)")
            return 1
        }
        if let forwarder, let journal = journal?.0 {
            do {
                try forwarder.start()
            } catch {
                logger.critical("cannot start the forwarder thread: \(error)")
                engine.requestShutdown()
                engine.waitUntilStopped()
                services.trail.daemonFailedToStart(error: "\(error)")
                return 1
            }
            // What the journal already holds and the stream may not.
            forwarder.notify(lastSequence: journal.nextSequence - 1)
            logger.notice("forwarding alerts to NATS JetStream", metadata: [
                "servers": "\(forwarder.configuration.connection.servers.map(ForwarderReport.withoutCredentials).joined(separator: ","))",
                "stream": "\(forwarder.configuration.streamName)", "subjects": "\(forwarder.configuration.streamSubjects)",
            ])
        }
        if let damage = journal?.1.damage {
            services.publishOwnAlert(.critical, message: "journal damaged: \(damage); alerts before the damage are not replayed")
        }
        if kill.killed {
            logger.warning("kill switch is tripped (\(kill.reason.map(Printable.escape) ?? "no reason")); it stays tripped until 'secureopsd reset-kill'")
        }
        logger.notice("secureopsd \(services.version) serving", metadata: [
            "socket": "\(options.socketPath)", "pid": "\(getpid())", "policyVersion": "\(policy.version)",
            "stateDir": "\(options.stateDirectory)", "auditLog": "\(auditLog.logPath)",
        ])

        var received: Int32 = 0
        while true {
            guard sigwait(&signals, &received) == 0 else { continue }
            if received == SIGHUP {
                logger.info("SIGHUP: reloading policy")
                // The reload reads a file: off this thread, and serialized
                // with request-driven reloads inside reloadPolicy.
                DispatchQueue.global().async {
                    _ = try? services.reloadPolicy(trigger: .signal)
                }
                continue
            }
            logger.notice("signal \(received): shutting down")
            break
        }
        engine.requestShutdown()
        engine.waitUntilStopped()
        // After the engine: the journal has everything by now, and the
        // forwarder gets a moment for acks in flight and stores its cursor.
        forwarder?.stop()
        services.trail.daemonStopped(signal: received, uptimeSeconds: services.uptimeSeconds)
        logger.notice("secureopsd stopped")
        return 0
    }

    /// Opens (and recovers) `<state dir>/journal`; nil with `--no-journal`.
    /// A journal that cannot be opened stops the start: the daemon does not
    /// quietly run without the durability it was asked for.
    private static func openJournal(_ options: DaemonOptions, state: OpenedDirectory, owner: UInt32, logger: Logger) throws -> (Journal, JournalRecovery)? {
        guard let configuration = options.journal else {
            logger.notice("no journal (--no-journal): alerts live in memory only and a restart begins a new stream")
            return nil
        }
        let directory = try StateDirectory.openSubdirectory("journal", in: state, owner: owner)
        let (journal, recovery) = try Journal.open(in: directory, configuration: configuration) { StreamEpoch.random().rawValue }
        if recovery.createdNewStream && recovery.damage == nil {
            logger.notice("journal: new stream \(StreamEpoch(rawValue: journal.epoch)) in \(directory.path)")
        } else if recovery.damage == nil {
            logger.info("journal: stream \(StreamEpoch(rawValue: journal.epoch)) continues at sequence \(journal.nextSequence) (\(recovery.records) alerts in \(recovery.segments) segments)")
        }
        if recovery.tornTailBytesCut > 0 {
            logger.warning("journal: cut \(recovery.tornTailBytesCut) bytes of an interrupted write from its end (\(recovery.tornTailReason ?? "")); every whole alert before them is kept")
        }
        if let damage = recovery.damage {
            logger.error("journal: \(damage)")
        }
        return (journal, recovery)
    }

    /// The JetStream forwarder `--forward-nats` asks for, reading the
    /// journal; nil without that flag.
    private static func makeForwarder(
        _ options: DaemonOptions, journal: Journal?, state: OpenedDirectory, services: DaemonServices, logger: Logger
    ) throws -> JetStreamForwarder? {
        guard let configuration = options.forwarder else { return nil }
        guard let journal else {
            throw StateDirectory.Failure(description: "--forward-nats forwards from the journal: drop --no-journal")
        }
        let forwarder = try JetStreamForwarder(
            configuration: configuration, source: JournalForwardingSource(journal: journal),
            epoch: StreamEpoch(rawValue: journal.epoch).description, cursorDirectory: state, logger: logger,
            // First enabled on this stream: everything the journal holds now
            // goes out; whatever leaves it unforwarded from now on is loud.
            startingAfter: journal.firstSequence - 1
        ) { [weak services] gap in services?.alertsDroppedBeforeForwarding(gap) }
        services.attach(forwarder)
        return forwarder
    }

    /// Raises the soft descriptor limit to the hard one: every connection
    /// is a descriptor. (The daemon's call, not the engine's: it changes the
    /// whole process.)
    private static func raiseDescriptorLimit(logger: Logger) {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        if limit.rlim_cur < 4096 {
            logger.warning("RLIMIT_NOFILE is \(limit.rlim_cur): few connections fit; raise it with 'ulimit -n' or LimitNOFILE= in the systemd unit")
        }
    }

    private static func logAuditLogNotes(_ log: AuditLog, logger: Logger) {
        let notes = log.notes
        if notes.createdKey { logger.notice("created audit log key \(log.keyPath) (mode 0600)") }
        if let reset = notes.reset {
            if let previous = reset.previousLog {
                logger.error("audit log could not be continued (\(reset.reason)); moved it to \(previous) and started a new chain; inspect it with 'secureops verify-log --log \(previous) --state-dir \(log.directory.path)'")
            } else {
                logger.error("audit log was tampered with: \(reset.reason); started a new chain and recorded why (log-reset)")
            }
        }
        if let unclean = notes.uncleanEnd {
            logger.warning("the previous run did not stop cleanly (its last record is seq \(unclean.lastSeq), \(unclean.lastEvent); audit.head anchors seq \(unclean.anchoredSeq)); recorded as unclean-shutdown")
        }
        for (path, mode) in notes.loosePermissions {
            logger.warning("\(path) has mode 0\(String(mode, radix: 8)): others may read it; 'secureops audit --fix' or 'chmod 0600 \(path)' repairs it (recorded in the audit log)")
        }
    }
}
