import Glibc
import SecureOpsSystem
import Synchronization

/// An async connection to `secureopsd`: typed requests, pipelined, with
/// timeouts, cancellation and an opt-in reconnect, and alert subscriptions
/// as `AsyncSequence`s.
///
/// ```swift
/// let client = try await SecureOpsAsyncClient.connect(to: path)
/// try await client.ping()
/// let sequence = try await client.publish(AlertInput(severity: .high, source: "fs-watch", message: "ssh key read"))
/// for try await alert in try await client.subscribe(since: 0).alerts {
///     print(alert.sequence, alert.message)
/// }
/// ```
///
/// Requests from any number of tasks share the connection: each frame is
/// written whole, in the order the calls reach the client, and the daemon
/// answers in that order, so replies are matched without ids. A request
/// that times out or whose task is cancelled throws at once; its reply,
/// when it comes, is dropped, and the connection stays usable.
///
/// Errors are `IpcError`: `.server` with the daemon's message for an `err`
/// reply, `.unauthorized`, `.timedOut`, `.connectionLost` when the
/// connection broke (the daemon stopped or crashed) before the reply came,
/// `.reconnectFailed` once reconnecting gave up; or `CancellationError`
/// when the calling task is cancelled.
///
/// A lost connection: without ``Configuration/reconnect`` (the default)
/// the client is then ``ConnectionState/failed(_:)`` and every later call
/// throws the same `.connectionLost`; connect a new client. With it, the
/// client reconnects in the background (``ConnectionState/reconnecting(attempt:)``),
/// calls made meanwhile wait for it (within their timeout), and once
/// ``ReconnectPolicy/maximumAttempts`` attempts failed every waiting and
/// later call throws `.reconnectFailed`. A call whose request was in flight
/// when the connection broke is never re-sent, idempotent or not: it throws
/// `.connectionLost`, since the daemon may or may not have acted on it
/// (`publish`, `kill`); repeat it if that is safe.
///
/// Waiting never blocks a thread: sockets are non-blocking and waits park
/// on one process-wide poll thread. Let go of the client (or call `close()`)
/// and its connection closes.
public final class SecureOpsAsyncClient: Sendable {
    public struct Configuration: Sendable {
        /// How long a call waits for its reply when it is given no
        /// `timeout:` (a subscription: for the daemon to accept it).
        public var requestTimeout: RequestTimeout
        /// How long `connect` retries while the daemon's accept backlog is
        /// full. (A missing socket or a refused connection fails at once.)
        public var connectTimeout: Duration
        /// The longest frame accepted from the daemon; a longer one ends
        /// the connection with `IpcError.codec` instead of growing a buffer.
        public var maxFrameBytes: Int
        /// Who may serve the socket (checked before anything is sent, on
        /// every connection, reconnects included); a server it refuses is
        /// `IpcError.untrustedServer`.
        public var serverTrust: ServerTrust
        /// How the request connection is re-established when it is lost;
        /// nil (the default): it is not, and every later call throws the
        /// loss. Subscriptions have connections and policies of their own
        /// (``SecureOpsAsyncClient/subscribe(since:reconnect:timeout:)``).
        public var reconnect: ReconnectPolicy?

        public init(
            requestTimeout: RequestTimeout = .seconds(30), connectTimeout: Duration = .seconds(5),
            maxFrameBytes: Int = 16 << 20, serverTrust: ServerTrust = .fromEnvironment, reconnect: ReconnectPolicy? = nil
        ) {
            self.requestTimeout = requestTimeout
            self.connectTimeout = connectTimeout
            self.maxFrameBytes = maxFrameBytes
            self.serverTrust = serverTrust
            self.reconnect = reconnect
        }
    }

    /// Where the client's request connection stands.
    public enum ConnectionState: Sendable, Equatable {
        /// Calls go out at once.
        case connected
        /// The connection was lost and attempt `attempt` (from 1) to
        /// re-establish it is under way or waiting its turn; calls wait.
        case reconnecting(attempt: Int)
        /// `close()` was called: every call throws `IpcError.transport`.
        case closed
        /// The connection was lost for good (no reconnect policy, or it
        /// gave up, or the daemon refused this peer): every call throws
        /// this error. Connect a new client.
        case failed(IpcError)
    }

    /// The socket path this client is connected to.
    public let path: String
    public let configuration: Configuration
    private let state: Locked<State>

    private struct State {
        var phase: Phase
        /// Subscriptions opened here, ended by `close()`.
        var subscriptions: [WeakSubscription] = []
    }

    private enum Phase {
        /// `attempt`: the reconnect attempt that made this connection (0:
        /// `connect`). If the daemon closes it with an error before it
        /// served anything, that attempt failed and the next one follows it.
        case connected(RequestPipeline, attempt: Int)
        /// Attempt `attempt` is waiting its delay or connecting; `waiting`
        /// are the calls that need the connection; `task` makes the
        /// attempts (cancelled by `close()`).
        case reconnecting(attempt: Int, waiting: [Delivery<RequestPipeline>], task: Task<Void, Never>?)
        case closed
        case failed(IpcError)
    }

    private init(path: String, configuration: Configuration, socket: ClientSocket) {
        self.path = path
        self.configuration = configuration
        state = Locked(State(phase: .closed))
        let pipeline = makePipeline(socket)
        state.withLock { $0.phase = .connected(pipeline, attempt: 0) }
        pipeline.startReading()
    }

    deinit {
        // Subscriptions live on: they have connections of their own, and a
        // stream handed elsewhere must not end because the client that
        // opened it went out of scope. (`close()` ends them.)
        shutDown(endingSubscriptions: false)
    }

    /// Connects to the daemon's socket.
    public static func connect(
        to path: String = WireDefaults.socketPath(), configuration: Configuration = Configuration()
    ) async throws -> SecureOpsAsyncClient {
        let socket = try await ClientSocket.connect(to: path, trust: configuration.serverTrust, deadline: configuration.connectTimeout.deadlineFromNow)
        return SecureOpsAsyncClient(path: path, configuration: configuration, socket: socket)
    }

    /// Closes the client: calls waiting for replies throw
    /// `IpcError.transport`, reconnecting stops, and every subscription
    /// opened from this client ends (its iteration returns nil).
    public func close() {
        shutDown(endingSubscriptions: true)
    }

    /// Where the request connection stands now.
    public var connectionState: ConnectionState {
        state.withLock { state in
            switch state.phase {
            case .connected: .connected
            case .reconnecting(let attempt, _, _): .reconnecting(attempt: attempt)
            case .closed: .closed
            case .failed(let error): .failed(error)
            }
        }
    }

    // MARK: - Requests

    /// Sends one request and returns its reply (an `err` reply is returned,
    /// not thrown), waiting at most `timeout` (nil:
    /// `configuration.requestTimeout`).
    public func request(_ request: IpcRequest, timeout: RequestTimeout? = nil) async throws -> IpcResponse {
        try await perform(.raw(request), timeout: timeout)
    }

    public func ping(timeout: RequestTimeout? = nil) async throws {
        try await perform(TypedCall.ping, timeout: timeout)
    }

    public func status(timeout: RequestTimeout? = nil) async throws -> MonitorStatus {
        try await perform(TypedCall.status, timeout: timeout)
    }

    /// Publishes one alert; returns its sequence.
    public func publish(_ alert: AlertInput, timeout: RequestTimeout? = nil) async throws -> UInt64 {
        try await perform(TypedCall.publish(alert), timeout: timeout)
    }

    /// The most recent retained alerts, oldest first (at most `limit`,
    /// default 100).
    public func alerts(limit: Int? = nil, timeout: RequestTimeout? = nil) async throws -> [MonitorAlert] {
        try await perform(TypedCall.alerts(limit: limit), timeout: timeout)
    }

    /// Trips the kill switch; returns the sequence of the kill alert.
    public func kill(reason: String?, timeout: RequestTimeout? = nil) async throws -> UInt64 {
        try await perform(TypedCall.kill(reason: reason), timeout: timeout)
    }

    public func audit(_ options: AuditOptions = AuditOptions(), timeout: RequestTimeout? = nil) async throws -> AuditReport {
        try await perform(TypedCall.audit(options), timeout: timeout)
    }

    /// Reloads the policy; returns the version in force.
    public func reloadPolicy(timeout: RequestTimeout? = nil) async throws -> Int {
        try await perform(TypedCall.reloadPolicy, timeout: timeout)
    }

    /// Subscribes on a connection of its own (see ``AlertSubscription``).
    /// Returns once the daemon has accepted the subscription (waiting at
    /// most `timeout`, nil: `configuration.requestTimeout`), so a refusal
    /// throws here. With `reconnect`, a lost connection is re-established
    /// and the stream resumes after the last alert received; without, a
    /// lost connection ends the iteration with `IpcError.connectionLost`.
    public func subscribe(since: UInt64? = nil, reconnect: ReconnectPolicy? = nil, timeout: RequestTimeout? = nil) async throws -> AlertSubscription {
        let settings = SubscriptionSettings(
            path: path, trust: configuration.serverTrust, reconnect: reconnect, connectTimeout: configuration.connectTimeout,
            replyTimeout: timeout ?? configuration.requestTimeout, maxFrameBytes: configuration.maxFrameBytes)
        let control = SubscriptionControl()
        let closed = state.withLock { state -> Bool in
            if case .closed = state.phase { return true }
            state.subscriptions.removeAll { $0.control == nil }
            state.subscriptions.append(WeakSubscription(control: control))
            return false
        }
        if closed { throw IpcError.transport("the client was closed") }
        return try await AlertSubscription.open(settings: settings, control: control, since: since)
    }

    // MARK: - The connection

    /// Sends `call` on the current connection, first waiting for it while
    /// the client reconnects; the timeout covers both.
    private func perform<Result>(_ call: Call<Result>, timeout: RequestTimeout?) async throws -> Result {
        let effective = timeout ?? configuration.requestTimeout
        let deadline = effective.deadlineFromNow
        let pipeline = try await currentConnection(deadline: deadline, for: call.verb)
        return try await pipeline.perform(call, deadline: deadline, timeout: effective)
    }

    private func currentConnection(deadline: UInt64?, for verb: String) async throws -> RequestPipeline {
        enum Next {
            case ready(RequestPipeline)
            case fail(IpcError)
            case wait(Delivery<RequestPipeline>)
        }
        let next = state.withLock { state -> Next in
            switch state.phase {
            case .connected(let pipeline, _):
                return .ready(pipeline)
            case .reconnecting(let attempt, var waiting, let task):
                let delivery = Delivery<RequestPipeline>()
                // Calls that timed out or were cancelled meanwhile are gone.
                waiting.removeAll { $0.isSettled }
                waiting.append(delivery)
                state.phase = .reconnecting(attempt: attempt, waiting: waiting, task: task)
                return .wait(delivery)
            case .closed:
                return .fail(.transport("the client was closed"))
            case .failed(let error):
                return .fail(error)
            }
        }
        switch next {
        case .ready(let pipeline):
            return pipeline
        case .fail(let error):
            throw error
        case .wait(let delivery):
            let path = path
            return try await delivery.wait(deadline: deadline) {
                .failure(IpcError.timedOut("no reply to \(verb) from \(path): the connection was lost and is not back yet"))
            }
        }
    }

    private func makePipeline(_ socket: ClientSocket) -> RequestPipeline {
        RequestPipeline(socket: socket, maxFrameBytes: configuration.maxFrameBytes) { [weak self] pipeline, ending in
            self?.connectionEnded(pipeline, ending)
        }
    }

    /// The current connection ended: reconnect, or fail for good.
    private func connectionEnded(_ pipeline: RequestPipeline, _ ending: RequestPipeline.Ending) {
        let firstAttempt = state.withLock { state -> Int? in
            guard case .connected(let current, let attempt) = state.phase, current === pipeline else { return nil }
            guard let policy = configuration.reconnect, ending.error.isWorthReconnecting else {
                state.phase = .failed(ending.error)
                return nil
            }
            // Refused before it served anything: the attempt that made it
            // failed, and backing off goes on from there.
            let next = ending.refusedBeforeServing ? attempt + 1 : 1
            guard policy.allows(attempt: next) else {
                state.phase = .failed(.reconnectFailed(attempts: next - 1, lastError: ending.error))
                return nil
            }
            state.phase = .reconnecting(attempt: next, waiting: [], task: nil)
            return next
        }
        guard let firstAttempt, let policy = configuration.reconnect else { return }
        // Holds the client only while an attempt connects, never while it
        // waits its delay: a client let go of stops reconnecting.
        let task = Task { [weak self] in
            var attempt = firstAttempt
            while true {
                do {
                    try await Task.sleep(for: policy.delay(beforeAttempt: attempt))
                } catch {
                    return  // closed
                }
                guard let client = self, let next = await client.makeAttempt(attempt, policy: policy) else { return }
                attempt = next
            }
        }
        let stale = state.withLock { state -> Bool in
            guard case .reconnecting(let attempt, let waiting, nil) = state.phase else { return true }
            state.phase = .reconnecting(attempt: attempt, waiting: waiting, task: task)
            return false
        }
        if stale { task.cancel() }
    }

    /// Makes reconnect attempt `attempt`; returns the next attempt to
    /// make, or nil when done (connected, given up, closed).
    private func makeAttempt(_ attempt: Int, policy: ReconnectPolicy) async -> Int? {
        let socket: ClientSocket
        do {
            socket = try await ClientSocket.connect(to: path, trust: configuration.serverTrust, deadline: configuration.connectTimeout.deadlineFromNow)
        } catch let error as IpcError {
            return attemptFailed(attempt, error, policy: policy)
        } catch {
            return nil  // cancelled: the client was closed
        }
        let pipeline = makePipeline(socket)
        let waiting = state.withLock { state -> [Delivery<RequestPipeline>]? in
            guard case .reconnecting(attempt, let waiting, _) = state.phase else { return nil }
            state.phase = .connected(pipeline, attempt: attempt)
            return waiting
        }
        guard let waiting else {
            pipeline.end(because: .transport("the client was closed"))
            return nil
        }
        pipeline.startReading()
        for delivery in waiting { delivery.settle(.success(pipeline)) }
        return nil
    }

    /// Records a failed attempt: the next one, or the end of reconnecting.
    private func attemptFailed(_ attempt: Int, _ error: IpcError, policy: ReconnectPolicy) -> Int? {
        enum After {
            case retry(Int)
            case failed(IpcError, [Delivery<RequestPipeline>])
            case stop
        }
        let after = state.withLock { state -> After in
            guard case .reconnecting(attempt, let waiting, let task) = state.phase else { return .stop }
            guard error.isWorthReconnecting else {
                state.phase = .failed(error)
                return .failed(error, waiting)
            }
            guard policy.allows(attempt: attempt + 1) else {
                let gaveUp = IpcError.reconnectFailed(attempts: attempt, lastError: error)
                state.phase = .failed(gaveUp)
                return .failed(gaveUp, waiting)
            }
            state.phase = .reconnecting(attempt: attempt + 1, waiting: waiting, task: task)
            return .retry(attempt + 1)
        }
        switch after {
        case .retry(let next):
            return next
        case .failed(let error, let waiting):
            for delivery in waiting { delivery.settle(.failure(error)) }
            return nil
        case .stop:
            return nil
        }
    }

    private func shutDown(endingSubscriptions: Bool) {
        let closedError = IpcError.transport("the client was closed")
        let (previous, subscriptions) = state.withLock { state -> (Phase, [WeakSubscription]) in
            defer {
                state.phase = .closed
                state.subscriptions = []
            }
            return (state.phase, state.subscriptions)
        }
        switch previous {
        case .connected(let pipeline, _):
            pipeline.end(because: closedError)
        case .reconnecting(_, let waiting, let task):
            task?.cancel()
            for delivery in waiting { delivery.settle(.failure(closedError)) }
        case .closed, .failed:
            break
        }
        if endingSubscriptions {
            for subscription in subscriptions { subscription.control?.cancel() }
        }
    }
}

/// A subscription the client ends on `close()`, without keeping it alive.
private struct WeakSubscription: Sendable {
    weak var control: SubscriptionControl?
}
