import SecureOpsSystem
import Synchronization

/// What a subscription yields: alerts, and what happened to the stream.
public enum SubscriptionEvent: Sendable, Equatable {
    /// One alert, in sequence order, each exactly once.
    case alert(MonitorAlert)
    /// The daemon evicted `skipped` alerts this subscriber had not received
    /// (it fell behind the retention ring); delivery continues at
    /// `resumeAt`. Nothing is lost silently.
    case lagged(skipped: UInt64, resumeAt: UInt64)
    /// The connection was lost and re-established to the same daemon run;
    /// delivery resumes with the first alert after `resumingAfter`
    /// (replayed from the daemon's retention, or a `lagged` notice if it
    /// has been evicted meanwhile).
    case reconnected(resumingAfter: UInt64)
    /// The connection was re-established to a *new* daemon run (it
    /// restarted): its sequences began again at 1. Delivery continues with
    /// every alert the new run retains, from its first. `epoch` identifies
    /// the new run (nil if the daemon does not report one).
    case restarted(epoch: StreamEpoch?)
}

/// How a subscription re-establishes a lost connection: exponential backoff
/// from `initialDelay` up to `maximumDelay`, for at most `maximumAttempts`
/// consecutive failed attempts (nil: until the task is cancelled).
public struct ReconnectPolicy: Sendable, Equatable {
    public var initialDelay: Duration
    public var maximumDelay: Duration
    public var maximumAttempts: Int?

    public init(initialDelay: Duration = .milliseconds(50), maximumDelay: Duration = .seconds(2), maximumAttempts: Int? = nil) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.maximumAttempts = maximumAttempts
    }

    /// 50 ms, doubling up to 2 s, forever.
    public static let `default` = ReconnectPolicy()
}

/// A live alert stream from `secureopsd`, on a connection of its own.
///
/// Iterate it once: alerts arrive in sequence order, lag notices and
/// reconnections as values between them (`SubscriptionEvent`). Reading is
/// pulled by the iteration, so a consumer that stops reading holds no
/// growing buffer here: the daemon keeps the backlog in its bounded ring
/// and, if the consumer falls too far behind, says how many alerts it
/// skipped.
///
/// Ending it: cancel the iterating task, break out of the loop, or call
/// `cancel()`; the iteration then ends (returns nil) and the connection
/// closes. Without a reconnect policy it also ends when the daemon closes
/// the connection (shutdown); if the daemon said why (an `err` frame, e.g.
/// the peer lost its grant), that message is thrown as `IpcError.server`.
///
/// Guarantees with a `ReconnectPolicy`:
/// - Within one daemon run (same `epoch`), across any number of dropped
///   connections: every alert exactly once, in order, as long as the daemon
///   still retains it when the subscription resumes; otherwise a `lagged`
///   event says how many were skipped.
/// - Across a daemon restart (a new `epoch`): a `restarted` event, then
///   every alert the new run retains from its sequence 1. Alerts the old run
///   published but had not sent before it stopped are gone with its
///   in-memory ring; a graceful stop (SIGTERM) flushes queued alerts to
///   subscribers first, so a subscriber that keeps reading loses none.
/// - A daemon that does not report an `epoch` is taken to have restarted
///   only when its `next` sequence is not above the last one received.
public final class AlertSubscription: AsyncSequence, Sendable {
    public typealias Element = SubscriptionEvent
    public typealias Failure = any Error

    /// The sequence the daemon's next live alert was going to carry when the
    /// subscription started (replayed alerts, if any, come before it).
    public let startingSequence: UInt64
    /// The daemon run the subscription started with (nil if not reported).
    public let initialEpoch: StreamEpoch?

    private let control: SubscriptionControl
    private let start: Locked<SubscriptionIterator.State?>

    private init(state: sending SubscriptionIterator.State, next: UInt64) {
        startingSequence = next
        initialEpoch = state.epoch
        control = state.control
        start = Locked(state)
    }

    static func open(
        path: String, trust: ServerTrust, since: UInt64?, reconnect: ReconnectPolicy?, connectTimeout: Duration,
        replyTimeout: Duration?, maxFrameBytes: Int
    ) async throws -> AlertSubscription {
        let settings = SubscriptionSettings(
            path: path, trust: trust, reconnect: reconnect, connectTimeout: connectTimeout,
            replyTimeout: replyTimeout, maxFrameBytes: maxFrameBytes)
        let opened = try await settings.openConnection(since: since)
        let control = SubscriptionControl()
        control.use(opened.socket)
        // The daemon starts this subscriber at min(since + 1, next).
        let position = Swift.min(since ?? (opened.next - 1), opened.next - 1)
        let state = SubscriptionIterator.State(
            settings: settings, control: control, socket: opened.socket, buffer: opened.buffer,
            position: position, epoch: opened.epoch)
        return AlertSubscription(state: state, next: opened.next)
    }

    /// The iterator; the first call gets the stream, later ones end at once.
    public func makeAsyncIterator() -> SubscriptionIterator {
        SubscriptionIterator(state: start.withLock { state in
            defer { state = nil }
            return state
        })
    }

    /// Ends the subscription from anywhere: the iteration returns nil and
    /// the connection closes.
    public func cancel() {
        control.cancel()
    }

    deinit {
        // The iterator may live on; it ends when it next reads.
        if start.withLock({ $0 != nil }) { control.cancel() }
    }
}

/// Iterates an `AlertSubscription` (see there).
public struct SubscriptionIterator: AsyncIteratorProtocol {
    public typealias Element = SubscriptionEvent
    public typealias Failure = any Error

    struct State {
        let settings: SubscriptionSettings
        let control: SubscriptionControl
        var socket: ClientSocket?
        var buffer: FrameBuffer
        /// Every alert up to here was delivered or reported skipped.
        var position: UInt64
        var epoch: StreamEpoch?
        /// The last non-lag `err` frame: why the daemon is about to close.
        var serverMessage: String?
        let decoder = FastJSONDecoder()
    }

    private var state: State?

    init(state: State?) {
        self.state = state
    }

    public mutating func next() async throws -> SubscriptionEvent? {
        try await step(isolation: nil)
    }

    public mutating func next(isolation actor: isolated (any Actor)?) async throws -> SubscriptionEvent? {
        try await step(isolation: actor)
    }

    /// Runs in the caller's isolation: the state never crosses to another.
    private mutating func step(isolation actor: isolated (any Actor)?) async throws -> SubscriptionEvent? {
        guard var current = state else { return nil }
        state = nil
        do {
            let event = try await current.nextEvent(isolation: actor)
            if event != nil { state = current } else { current.finish() }
            return event
        } catch {
            current.finish()
            throw error
        }
    }
}

/// What a subscription needs to (re)connect.
struct SubscriptionSettings: Sendable {
    let path: String
    let trust: ServerTrust
    let reconnect: ReconnectPolicy?
    let connectTimeout: Duration
    let replyTimeout: Duration?
    let maxFrameBytes: Int

    struct Opened {
        let socket: ClientSocket
        /// May already hold alert frames that followed the reply.
        var buffer: FrameBuffer
        let next: UInt64
        let epoch: StreamEpoch?
    }

    private struct SubscribeReply: Decodable {
        var next: UInt64
    }

    private struct StatusEpoch: Decodable {
        var epoch: String?
    }

    /// Connects and subscribes; returns once the daemon has answered.
    ///
    /// `status` goes first on the same connection: its `epoch` (an additive
    /// MonitorStatus field) names this daemon run, so a reconnect can tell a
    /// restart. Both replies come from the same daemon, in order, so the
    /// epoch and `next` belong together.
    func openConnection(since: UInt64?) async throws -> Opened {
        let socket = try await ClientSocket.connect(to: path, trust: trust, deadline: connectTimeout.deadlineFromNow)
        let request = IpcRequest.subscribe(since: since)
        let deadline = replyTimeout?.deadlineFromNow
        do {
            try await socket.send(IpcRequest.status.frame + request.frame, deadline: deadline)
            var buffer = FrameBuffer(maxFrameBytes: maxFrameBytes)
            var epoch: StreamEpoch??
            while true {
                if let frame = try buffer.nextFrame() {
                    let response: IpcResponse
                    do {
                        response = try FastJSONDecoder().decode(IpcResponse.self, from: frame)
                    } catch {
                        throw IpcError.codec("undecodable frame from \(path): \(error)")
                    }
                    guard let known = epoch else {
                        let status = try decodePayload(StatusEpoch.self, try okPayload(response, for: .status), for: .status)
                        epoch = .some(status.epoch.flatMap(StreamEpoch.init))
                        continue
                    }
                    let reply = try decodePayload(SubscribeReply.self, try okPayload(response, for: request), for: request)
                    return Opened(socket: socket, buffer: buffer, next: reply.next, epoch: known)
                }
                guard try await socket.receive(into: &buffer, deadline: deadline) else {
                    throw IpcError.transport("\(path) closed the connection before answering subscribe")
                }
            }
        } catch {
            socket.shutdown()
            throw error
        }
    }
}

/// The part of a subscription other threads touch: `cancel()`.
///
/// It holds the current socket weakly: the iterator owns it, so when the
/// iteration is dropped (a `break` out of the loop) the socket closes even
/// though the `AlertSubscription` value lives on.
final class SubscriptionControl: Sendable {
    private struct State {
        var cancelled = false
        weak var socket: ClientSocket?
    }

    private let state = Locked(State())

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Makes `socket` the one `cancel()` ends; false if already cancelled.
    @discardableResult
    func use(_ socket: ClientSocket) -> Bool {
        let cancelled = state.withLock { state -> Bool in
            if !state.cancelled { state.socket = socket }
            return state.cancelled
        }
        if cancelled { socket.shutdown() }
        return !cancelled
    }

    func cancel() {
        let socket = state.withLock { state -> ClientSocket? in
            state.cancelled = true
            defer { state.socket = nil }
            return state.socket
        }
        socket?.shutdown()
    }
}

extension SubscriptionIterator.State {
    /// The next event, or nil when the subscription is over.
    mutating func nextEvent(isolation actor: isolated (any Actor)?) async throws -> SubscriptionEvent? {
        while true {
            if control.isCancelled || Task.isCancelled { return nil }
            guard let socket else {
                guard let policy = settings.reconnect else { return try endOfStream() }
                return try await reestablish(policy, isolation: actor)
            }
            do {
                if let frame = try buffer.nextFrame() {
                    if let event = try handle(frame) { return event }
                    continue
                }
                if try await socket.receive(into: &buffer, deadline: nil) { continue }
                connectionLost()
            } catch is CancellationError {
                return nil
            } catch let error as IpcError {
                guard settings.reconnect != nil, case .transport = error else { throw error }
                connectionLost()
            }
        }
    }

    private mutating func handle(_ frame: [UInt8]) throws -> SubscriptionEvent? {
        let response: IpcResponse
        do {
            response = try decoder.decode(IpcResponse.self, from: frame)
        } catch {
            throw IpcError.codec("undecodable frame from \(settings.path): \(error)")
        }
        switch response {
        case .alert(let alert):
            // Sequences only grow within a run; an alert at or below the
            // position was already delivered (never expected; kept so a
            // resumed stream can never yield one twice).
            guard alert.sequence > position else { return nil }
            position = alert.sequence
            return .alert(alert)
        case .err(_, let skipped?, let resumeAt?):
            position = max(position, resumeAt &- 1)
            return .lagged(skipped: skipped, resumeAt: resumeAt)
        case .err(let message, _, _):
            serverMessage = message
            return nil
        case .ok:
            return nil
        }
    }

    private mutating func connectionLost() {
        socket?.shutdown()
        socket = nil
        buffer = FrameBuffer(maxFrameBytes: settings.maxFrameBytes)
    }

    /// The daemon closed the connection and there is no reconnecting.
    private func endOfStream() throws -> SubscriptionEvent? {
        if let serverMessage {
            if serverMessage.hasPrefix("not authorized") { throw IpcError.unauthorized(serverMessage) }
            throw IpcError.server(serverMessage)
        }
        return nil
    }

    /// Reconnects with backoff and resubscribes after `position`; detects a
    /// restarted daemon (new epoch) and then starts from its beginning.
    private mutating func reestablish(_ policy: ReconnectPolicy, isolation actor: isolated (any Actor)?) async throws -> SubscriptionEvent? {
        var delay = policy.initialDelay
        var failures = 0
        while true {
            do {
                try await Task.sleep(for: delay)
            } catch {
                return nil
            }
            if control.isCancelled { return nil }
            do {
                let opened = try await settings.openConnection(since: position)
                if isNewRun(opened) {
                    opened.socket.shutdown()
                    // Everything the new run retains, from its sequence 1.
                    let fresh = try await settings.openConnection(since: 0)
                    if let first = opened.epoch, fresh.epoch != first { continue }  // restarted again meanwhile
                    install(fresh)
                    position = 0
                    epoch = fresh.epoch
                    return .restarted(epoch: fresh.epoch)
                }
                install(opened)
                if epoch == nil { epoch = opened.epoch }
                return .reconnected(resumingAfter: position)
            } catch is CancellationError {
                return nil
            } catch let error as IpcError {
                if case .unauthorized = error { throw error }
                failures += 1
                if let limit = policy.maximumAttempts, failures >= limit { throw error }
            }
            delay = Swift.min(delay * 2, policy.maximumDelay)
        }
    }

    private func isNewRun(_ opened: SubscriptionSettings.Opened) -> Bool {
        if let known = epoch, let now = opened.epoch { return known != now }
        // No epoch to compare: only a sequence that went backwards tells.
        return opened.next <= position
    }

    private mutating func install(_ opened: SubscriptionSettings.Opened) {
        guard control.use(opened.socket) else {
            opened.socket.shutdown()
            return
        }
        socket = opened.socket
        buffer = opened.buffer
        serverMessage = nil
    }

    /// Ends the connection (the iteration is over).
    mutating func finish() {
        socket?.shutdown()
        socket = nil
        control.cancel()
    }
}
