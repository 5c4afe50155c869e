import CURing
import Glibc
import Logging
import SecureOpsSystem
import Synchronization

/// A server for newline-delimited JSON over Unix sockets and TCP, on
/// io_uring where the kernel allows it and epoll elsewhere.
///
/// One dedicated thread runs every accept, read and write (with io_uring,
/// through one ring it owns); `Handler` answers decoded requests on that
/// thread or offloads them to a Dispatch pool. The engine also carries one broadcast stream:
/// frames published from any thread reach every subscribed connection in
/// sequence order, each encoded once.
///
/// ```swift
/// let engine = try Engine<MyHandler>(configuration: .init(socketPath: "/run/my/my.sock"))
/// try engine.start(handler: MyHandler())
/// engine.publish { sequence, millis, writer in ... }
/// await engine.shutdown()
/// ```
public final class Engine<Handler: RequestHandler>: Sendable {
    public let configuration: EngineConfiguration
    /// Identifies this engine's broadcast stream: a random number drawn when
    /// the engine is created, or the journal's (`EngineConfiguration.journal`),
    /// whose stream continues across restarts. A client that reconnects
    /// compares epochs to tell "the same stream, resume after my last
    /// sequence" from "a new stream, start from its beginning". Also on
    /// `RequestContext`.
    public let epoch: StreamEpoch
    private let logger: Logger
    private let counters = EngineCounters()
    private let inbox: Inbox
    private let lifecycle = Locked(Lifecycle())
    private let stopped = StopSignal()

    private struct Lifecycle {
        var started = false
        var thread: pthread_t?
        var backend: ServingBackend?
        var boundAddresses: [ListenAddress] = []
    }

    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "secureops.engine")) throws(EngineError) {
        self.configuration = configuration
        self.logger = logger
        if let journal = configuration.journal {
            inbox = try Inbox(nextSequence: journal.nextSequence)
            epoch = StreamEpoch(rawValue: journal.epoch)
        } else {
            inbox = try Inbox()
            epoch = StreamEpoch.random()
        }
    }

    /// Binds every listener, starts the loop thread and returns once it
    /// serves. Throws if a listener or the IO backend cannot be set up,
    /// with the reason (nothing stays bound then).
    public func start(handler: sending Handler) throws(EngineError) {
        let alreadyStarted = lifecycle.withLock { state in
            defer { state.started = true }
            return state.started
        }
        guard !alreadyStarted else { throw .invalidState("this engine was already started; create a new one") }

        let capacity = Self.connectionCapacity(configured: configuration.limits.maxConnections, logger: logger)
        guard !configuration.listeners.isEmpty else {
            throw .invalidState("the configuration names no listener; give a socket path or a TCP address")
        }
        var listeners: [Listener] = []
        for address in configuration.listeners {
            do {
                listeners.append(try Listener.open(address, configuration: configuration, logger: logger))
            } catch {
                for opened in listeners { opened.close(logger: logger) }
                throw error
            }
        }

        let startup = StartupHandoff()
        let start = LoopThreadStart(
            configuration: configuration, listeners: listeners, inbox: inbox, counters: counters,
            logger: logger, capacity: capacity, handler: handler, epoch: epoch, startup: startup, stopped: stopped)
        let thread: pthread_t
        switch Threads.start({ start.run() }) {
        case .success(let spawned):
            thread = spawned
        case .failure(let error):
            for listener in listeners { listener.close(logger: logger) }
            throw .invalidState("could not start the loop thread: \(String(cString: strerror(error.code)))")
        }
        switch startup.wait() {
        case .success(let started):
            lifecycle.withLock {
                $0.thread = thread
                $0.backend = started.backend
                $0.boundAddresses = started.listeners
            }
            startup.record()
        case .failure(let error):
            pthread_join(thread, nil)
            throw error
        }
    }

    /// Broadcasts one frame from any thread. `encode` writes the whole frame
    /// (ending with a newline) given its sequence and the time in
    /// milliseconds since the epoch; it runs under the publish lock, so keep
    /// it short. Publishes from one thread keep their order. Returns the
    /// frame's sequence.
    ///
    /// Frames published before `start` wait for it; frames published while
    /// a shutdown drains still reach subscribers within the grace period.
    /// Once the engine has stopped, nothing is published and this throws
    /// ``EngineError/stopped``.
    @discardableResult
    public func publish(
        _ encode: (_ sequence: UInt64, _ timestampMilliseconds: Int64, inout JSONWriter) -> Void
    ) throws(EngineError) -> UInt64 {
        guard let sequence = inbox.publish(encode) else { throw .stopped }
        return sequence
    }

    /// Replaces the engine's limits while it runs.
    public func updateLimits(_ limits: EngineLimits) {
        inbox.post(.updateLimits(limits))
    }

    /// Runs the handler's `admit` again for every open connection (from any
    /// thread); connections it now refuses get its error and are closed.
    /// Call it after the rules behind `admit` changed, e.g. a policy reload.
    public func reviewConnections() {
        inbox.post(.reviewConnections)
    }

    public var statistics: EngineStatistics {
        counters.snapshot(journal: configuration.journal)
    }

    /// The IO backend serving, once started (see `IOBackendChoice`).
    public var ioBackend: IOBackendKind? {
        lifecycle.withLock { $0.backend?.kind }
    }

    /// Where the engine listens, as bound (a TCP port 0 resolved to the
    /// port the kernel picked); empty until started.
    public var boundAddresses: [ListenAddress] {
        lifecycle.withLock { $0.boundAddresses }
    }

    /// The backend with its details and, when `auto` chose epoll, why
    /// io_uring was not used; nil until started.
    public var servingBackend: ServingBackend? {
        lifecycle.withLock { $0.backend }
    }

    /// Whether `start(handler:)` succeeded (it stays true after the engine
    /// stopped; an engine is started at most once).
    public var hasStarted: Bool {
        lifecycle.withLock { $0.backend != nil }
    }

    /// Stops accepting, answers what was received, flushes, closes every
    /// connection and stops the loop thread. Returns when it has stopped
    /// (at once for an engine that never started).
    public func shutdown() async {
        guard hasStarted else { return }
        requestShutdown()
        await stopped.wait()
        join()
    }

    /// Blocking form of `shutdown()`, for code that is not async.
    public func shutdownAndWait() {
        guard hasStarted else { return }
        requestShutdown()
        stopped.waitBlocking()
        join()
    }

    /// Starts shutting down and returns at once.
    public func requestShutdown() {
        inbox.post(.shutdown)
    }

    /// Blocks until the engine has stopped (after a shutdown from anywhere).
    /// Returns at once if it never started.
    public func waitUntilStopped() {
        guard hasStarted else { return }
        stopped.waitBlocking()
        join()
    }

    /// Suspends, without blocking a thread, until the engine has stopped
    /// (after a shutdown from anywhere). Returns at once if it never started.
    public func waitForStop() async {
        guard hasStarted else { return }
        await stopped.wait()
        join()
    }

    private func join() {
        let thread = lifecycle.withLock { state -> pthread_t? in
            defer { state.thread = nil }
            return state.thread
        }
        if let thread { pthread_join(thread, nil) }
    }

    /// How many connections fit in the descriptor limit, keeping some
    /// descriptors for everything else. The engine does not change the
    /// limit: that is a process-wide decision (secureopsd raises its soft
    /// limit to the hard one at start).
    static func connectionCapacity(configured: Int?, logger: Logger) -> Int {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let descriptors = Int(clamping: limit.rlim_cur)
        let reserve = min(256, max(16, descriptors / 20))
        let fitting = max(1, descriptors - reserve)
        let capacity: Int
        if let configured {
            // An explicit cap is the embedder's call, even above what the
            // descriptor limit allows; accepts beyond it then fail with
            // EMFILE and are retried as descriptors free up.
            capacity = max(1, configured)
            if configured > fitting {
                logger.warning("maxConnections \(configured) exceeds what RLIMIT_NOFILE \(descriptors) allows (\(fitting)); accepts will wait for free descriptors")
            }
        } else {
            capacity = fitting
        }
        logger.info("connection capacity \(capacity) (RLIMIT_NOFILE \(descriptors))")
        return capacity
    }
}

/// What the loop thread needs to start: moved to it once, used only there.
private struct LoopThreadStart<Handler: RequestHandler> {
    let configuration: EngineConfiguration
    let listeners: [Listener]
    let inbox: Inbox
    let counters: EngineCounters
    let logger: Logger
    let capacity: Int
    let handler: Handler
    let epoch: StreamEpoch
    let startup: StartupHandoff
    let stopped: StopSignal

    func run() {
        Threads.nameCurrentThread(configuration.threadName)
        // The backend is made here: io_uring's ring must belong to the
        // thread that submits to it (SINGLE_ISSUER, DEFER_TASKRUN).
        let backend: IOBackend
        let serving: ServingBackend
        do {
            (backend, serving) = try BackendSelection.make(configuration.ioBackend, configuration: configuration, wakeFD: inbox.eventFD, logger: logger)
        } catch {
            for listener in listeners { listener.close(logger: logger) }
            _ = inbox.close()
            startup.finish(.failure(error))
            stopped.signal()
            return
        }
        var journalWrites: JournalWrites?
        if let journal = configuration.journal {
            let inbox = self.inbox
            if configuration.journalWriter == .loop, let ring = backend as? FileWritingBackend {
                journalWrites = .ring(JournalRingWriter(journal: journal, backend: ring, inbox: inbox, now: SystemClock.monotonicNanoseconds()))
            } else {
                do {
                    journalWrites = .thread(try JournalWriter(journal: journal) { progress in inbox.post(.journalProgress(progress)) })
                } catch {
                    for listener in listeners { listener.close(logger: logger) }
                    _ = inbox.close()
                    startup.finish(.failure(.invalidState("could not start the journal writer: \(error)")))
                    stopped.signal()
                    return
                }
            }
        }
        let loop = EventLoop(
            configuration: configuration, listeners: listeners, backend: backend, inbox: inbox,
            counters: counters, logger: logger, connectionCapacity: capacity, journalWrites: journalWrites)
        loop.dispatcher = HandlerDispatcher(handler: handler, loop: loop, epoch: epoch)
        startup.finish(.success(Started(backend: serving, listeners: listeners.map(\.address))))
        // Serve only once `start` has recorded how: a request answered
        // before would see no backend and no bound addresses.
        startup.waitUntilRecorded()
        loop.run()
        stopped.signal()
    }
}

/// What the loop thread reports once it serves.
private struct Started: Sendable {
    var backend: ServingBackend
    var listeners: [ListenAddress]
}

/// The loop thread's answer to "did you start?", and the starter's "noted".
private final class StartupHandoff: Sendable {
    private let result = Locked<Result<Started, EngineError>?>(nil)
    private let ready = Semaphore()
    private let recorded = Semaphore()

    func finish(_ outcome: Result<Started, EngineError>) {
        result.withLock { $0 = outcome }
        ready.signal()
    }

    func wait() -> Result<Started, EngineError> {
        ready.wait()
        return result.withLock { $0! }
    }

    /// The starter has stored what `wait` returned.
    func record() {
        recorded.signal()
    }

    func waitUntilRecorded() {
        recorded.wait()
    }
}

/// Signalled once when the loop thread ends; awaitable and blocking.
final class StopSignal: Sendable {
    private let state = Locked<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    private let semaphore = Semaphore()

    func signal() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
        semaphore.signalForever()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func waitBlocking() {
        semaphore.wait()
    }
}

/// A counting semaphore (pthread mutex + condition variable in memory that
/// never moves) that can also be opened for good.
final class Semaphore: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let condition: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)
    private var count = 0
    private var open = false

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func signal() {
        pthread_mutex_lock(mutex)
        count += 1
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Lets every present and future `wait` through.
    func signalForever() {
        pthread_mutex_lock(mutex)
        open = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while count == 0 && !open { pthread_cond_wait(condition, mutex) }
        if !open { count -= 1 }
        pthread_mutex_unlock(mutex)
    }
}
