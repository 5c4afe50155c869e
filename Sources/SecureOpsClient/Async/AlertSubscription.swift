import Glibc
import SecureOpsSystem
import Synchronization

/// What a subscription yields: alerts, and what happened to the stream.
///
/// Without a reconnect policy only `alert` and `lagged` occur. With one, a
/// lost connection reads, in order:
///
///     .disconnected(why)
///     .reconnecting(attempt: 1)      // then 2, 3, ... while attempts fail
///     .reconnected(resumingAfter:)   // or .restarted(epoch:)
///
/// and alerts go on from where they stopped. If the policy's
/// `maximumAttempts` all fail, the iteration throws
/// `IpcError.reconnectFailed` instead.
public enum SubscriptionEvent: Sendable, Equatable {
    /// One alert, in sequence order, each exactly once.
    case alert(MonitorAlert)
    /// The daemon evicted `skipped` alerts this subscriber had not received
    /// (it fell behind the retention ring); delivery continues at
    /// `resumeAt`. Nothing is lost silently.
    case lagged(skipped: UInt64, resumeAt: UInt64)
    /// The connection was lost (`reason`, usually `IpcError.connectionLost`:
    /// the daemon stopped or crashed) and the subscription is about to
    /// reconnect. Alerts published meanwhile are not lost as long as the
    /// daemon runs and retains them.
    case disconnected(reason: IpcError)
    /// Attempt `attempt` (from 1) to reconnect begins: after the policy's
    /// delay, a new connection and a new `subscribe`.
    case reconnecting(attempt: Int)
    /// The connection was re-established to the same daemon run; delivery
    /// resumes with the first alert after `resumingAfter` (replayed from
    /// the daemon's retention, or a `lagged` notice if it has been evicted
    /// meanwhile).
    case reconnected(resumingAfter: UInt64)
    /// The connection was re-established to a *new* daemon run (it
    /// restarted): its sequences began again at 1. Delivery continues with
    /// every alert the new run retains, from its first. `epoch` identifies
    /// the new run (nil if the daemon does not report one).
    case restarted(epoch: StreamEpoch?)
}

/// A live alert stream from `secureopsd`, on a connection of its own.
///
/// Iterate it once: alerts arrive in sequence order, lag notices and
/// connection events as values between them (``SubscriptionEvent``); or
/// iterate ``alerts`` for the alerts alone. Reading is pulled by the
/// iteration, so a consumer that stops reading holds no growing buffer
/// here: the daemon keeps the backlog in its bounded ring and, if the
/// consumer falls too far behind, says how many alerts it skipped.
///
/// How it ends:
/// - Cleanly, returning nil: the iterating task is cancelled, the loop is
///   left (`break`), `cancel()` is called, or the client that opened it is
///   closed. The connection closes.
/// - With an error: the connection is lost (the daemon stopped or crashed)
///   and there is no reconnect policy: `IpcError.connectionLost`, after
///   every alert that arrived before the loss; reconnecting gave up:
///   `IpcError.reconnectFailed`; the daemon ended the subscription (a
///   policy reload took `subscribe` away): its message, as
///   `IpcError.unauthorized` or `.server`.
///
/// Guarantees with a ``ReconnectPolicy``:
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

    static func open(settings: SubscriptionSettings, control: SubscriptionControl, since: UInt64?) async throws -> AlertSubscription {
        let opened = try await settings.openConnection(since: since, control: control)
        // The daemon starts this subscriber at min(since + 1, next).
        let position = Swift.min(since ?? (opened.next - 1), opened.next - 1)
        let state = SubscriptionIterator.State(
            settings: settings, control: control, phase: .streaming(opened.socket), frames: opened.frames,
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

    /// The alerts alone: lag notices and connection events are left out
    /// (a lag shows as a gap in the sequences). Ends and throws as the
    /// subscription does. Like the subscription, iterate it once.
    public var alerts: Alerts { Alerts(subscription: self) }

    /// Ends the subscription from anywhere: the iteration returns nil and
    /// the connection closes.
    public func cancel() {
        control.cancel()
    }

    deinit {
        // The iterator may live on; it ends when it next reads.
        if start.withLock({ $0 != nil }) { control.cancel() }
    }

    /// A subscription's alerts, without its other events.
    public struct Alerts: AsyncSequence, Sendable {
        public typealias Element = MonitorAlert
        public typealias Failure = any Error

        let subscription: AlertSubscription

        public func makeAsyncIterator() -> Iterator {
            Iterator(events: subscription.makeAsyncIterator())
        }

        public struct Iterator: AsyncIteratorProtocol {
            public typealias Element = MonitorAlert
            public typealias Failure = any Error

            var events: SubscriptionIterator

            public mutating func next() async throws -> MonitorAlert? {
                try await next(isolation: nil)
            }

            public mutating func next(isolation actor: isolated (any Actor)?) async throws -> MonitorAlert? {
                while let event = try await events.next(isolation: actor) {
                    if case .alert(let alert) = event { return alert }
                }
                return nil
            }
        }
    }
}

/// Iterates an `AlertSubscription` (see there).
public struct SubscriptionIterator: AsyncIteratorProtocol {
    public typealias Element = SubscriptionEvent
    public typealias Failure = any Error

    struct State {
        let settings: SubscriptionSettings
        let control: SubscriptionControl
        var phase: Phase
        /// Frames received on the current connection and not yet read.
        var frames: FrameReader
        /// Every alert up to here was delivered or reported skipped.
        var position: UInt64
        var epoch: StreamEpoch?
        let decoder = FastJSONDecoder()
    }

    /// Where the stream stands. (Ended is the iterator without a state.)
    enum Phase {
        /// Alerts are read from this connection.
        case streaming(ClientSocket)
        /// The connection was lost; attempt `attempt` is next, once a
        /// `reconnecting` event has announced it.
        case lost(nextAttempt: Int, lastError: IpcError)
        /// Attempt `attempt` was announced: its delay, then connecting.
        case reconnecting(attempt: Int, lastError: IpcError)
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
    let replyTimeout: RequestTimeout
    let maxFrameBytes: Int

    struct Opened {
        let socket: ClientSocket
        /// May already hold alert frames that followed the reply.
        var frames: FrameReader
        let next: UInt64
        let epoch: StreamEpoch?
    }

    private struct StatusEpoch: Decodable, Sendable {
        var epoch: String?
    }

    /// Connects and subscribes; returns once the daemon has answered.
    ///
    /// `status` goes first on the same connection: its `epoch` (an additive
    /// MonitorStatus field) names this daemon run, so a reconnect can tell a
    /// restart. Both replies come from the same daemon, in order, so the
    /// epoch and `next` belong together.
    func openConnection(since: UInt64?, control: SubscriptionControl) async throws -> Opened {
        let socket = try await ClientSocket.connect(to: path, trust: trust, deadline: connectTimeout.deadlineFromNow)
        // From here `cancel()` ends the handshake too.
        guard control.use(socket) else { throw CancellationError() }
        let status = Call(.status, payload: StatusEpoch.self) { $0.epoch.flatMap(StreamEpoch.init) }
        let subscribe = TypedCall.subscribe(since: since)
        let deadline = replyTimeout.deadlineFromNow
        do {
            try await socket.send(status.request.frame + subscribe.request.frame, deadline: deadline)
            var frames = FrameReader(maxFrameBytes: maxFrameBytes)
            let epoch = try await reply(to: status, on: socket, frames: &frames, deadline: deadline)
            let next = try await reply(to: subscribe, on: socket, frames: &frames, deadline: deadline)
            return Opened(socket: socket, frames: frames, next: next, epoch: epoch)
        } catch {
            socket.shutdown()
            if control.isCancelled { throw CancellationError() }
            throw error
        }
    }

    private func reply<Result>(to call: Call<Result>, on socket: ClientSocket, frames: inout FrameReader, deadline: UInt64?) async throws -> Result {
        let decoder = FastJSONDecoder()
        while true {
            if let interpreted = try frames.nextFrame({ call.interpret($0, decoder) }) {
                switch interpreted {
                case .reply(let result): return try result.get()
                case .pushed: continue
                case .corrupt(let why): throw IpcError.codec("undecodable frame from \(path): \(why)")
                }
            }
            let received: FrameReader.Received
            do {
                received = try await socket.receive(into: &frames, deadline: deadline)
            } catch IpcError.timedOut {
                // `status` is part of subscribing: name what the caller asked.
                throw IpcError.timedOut("no reply to subscribe from \(path) within \(replyTimeout)")
            }
            switch received {
            case .bytes, .wouldBlock: continue
            case .endOfStream: throw IpcError.connectionLost("\(path) closed the connection before answering subscribe")
            case .failed(let code): throw IpcError.connectionLost("read from \(path) failed: \(String(cString: strerror(code)))")
            }
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
        /// The reconnect delay being waited, which `cancel()` cuts short.
        var pause: Delivery<Void>?
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

    /// Waits `delay`, or less if `cancel()` comes first; false then (or if
    /// the task is cancelled).
    func pause(for delay: Duration) async -> Bool {
        let pause = Delivery<Void>()
        let cancelled = state.withLock { state -> Bool in
            if !state.cancelled { state.pause = pause }
            return state.cancelled
        }
        if cancelled { return false }
        do {
            try await pause.wait(deadline: delay.deadlineFromNow) { .success(()) }
        } catch {
            return false
        }
        state.withLock { $0.pause = nil }
        return !isCancelled
    }

    func cancel() {
        let (socket, pause) = state.withLock { state -> (ClientSocket?, Delivery<Void>?) in
            state.cancelled = true
            defer {
                state.socket = nil
                state.pause = nil
            }
            return (state.socket, state.pause)
        }
        socket?.shutdown()
        pause?.settle(.failure(CancellationError()))
    }
}

extension SubscriptionIterator.State {
    /// The next event, or nil when the subscription is over.
    mutating func nextEvent(isolation actor: isolated (any Actor)?) async throws -> SubscriptionEvent? {
        while true {
            if control.isCancelled || Task.isCancelled { return nil }
            switch phase {
            case .streaming(let socket):
                if let event = try nextBufferedEvent() { return event }
                let received: FrameReader.Received
                do {
                    received = try await socket.receive(into: &frames, deadline: nil)
                } catch is CancellationError {
                    return nil
                }
                switch received {
                case .bytes, .wouldBlock:
                    continue
                case .endOfStream:
                    return try connectionLost(.connectionLost("\(settings.path) closed the subscription's connection"))
                case .failed(let code):
                    return try connectionLost(.connectionLost("read from \(settings.path) failed: \(String(cString: strerror(code)))"))
                }

            case .lost(let attempt, let lastError):
                guard let policy = settings.reconnect, policy.allows(attempt: attempt) else {
                    throw IpcError.reconnectFailed(attempts: attempt - 1, lastError: lastError)
                }
                phase = .reconnecting(attempt: attempt, lastError: lastError)
                return .reconnecting(attempt: attempt)

            case .reconnecting(let attempt, _):
                guard let policy = settings.reconnect else { preconditionFailure("reconnecting without a policy") }
                guard await control.pause(for: policy.delay(beforeAttempt: attempt)) else { return nil }
                do {
                    return try await reestablish(isolation: actor)
                } catch is CancellationError {
                    return nil
                } catch let error as IpcError {
                    if control.isCancelled { return nil }
                    guard error.isWorthReconnecting else { throw error }
                    phase = .lost(nextAttempt: attempt + 1, lastError: error)
                }
            }
        }
    }

    /// The next event the buffered frames make; nil once no whole frame is
    /// left (frames that make no event are skipped).
    private mutating func nextBufferedEvent() throws -> SubscriptionEvent? {
        let decoder = decoder
        while let decoded = try frames.nextFrame({ frame in Result { try decoder.decode(IpcResponse.self, from: frame) } }) {
            let response: IpcResponse
            do {
                response = try decoded.get()
            } catch {
                throw IpcError.codec("undecodable frame from \(settings.path): \(error)")
            }
            switch response {
            case .alert(let alert):
                // Sequences only grow within a run; an alert at or below the
                // position was already delivered (never expected; kept so a
                // resumed stream can never yield one twice).
                guard alert.sequence > position else { continue }
                position = alert.sequence
                return .alert(alert)
            case .err(_, let skipped?, let resumeAt?):
                position = max(position, resumeAt &- 1)
                return .lagged(skipped: skipped, resumeAt: resumeAt)
            case .err(let message, _, _):
                // The daemon ended the subscription and says why (WIRE.md:
                // no alert follows). Reconnecting would only be refused.
                throw IpcError(serverMessage: message)
            case .ok:
                continue
            }
        }
        return nil
    }

    /// The connection ended: a clean end if `cancel()` caused it, else the
    /// loss is thrown, or announced before reconnecting.
    private mutating func connectionLost(_ error: IpcError) throws -> SubscriptionEvent? {
        closeConnection()
        if control.isCancelled { return nil }
        guard settings.reconnect != nil else { throw error }
        phase = .lost(nextAttempt: 1, lastError: error)
        return .disconnected(reason: error)
    }

    /// Reconnects and resubscribes after `position`; detects a restarted
    /// daemon (new epoch) and then starts from its beginning.
    private mutating func reestablish(isolation actor: isolated (any Actor)?) async throws -> SubscriptionEvent {
        let opened = try await settings.openConnection(since: position, control: control)
        guard isNewRun(opened) else {
            install(opened)
            if epoch == nil { epoch = opened.epoch }
            return .reconnected(resumingAfter: position)
        }
        opened.socket.shutdown()
        // Everything the new run retains, from its sequence 1.
        let fresh = try await settings.openConnection(since: 0, control: control)
        install(fresh)
        position = 0
        epoch = fresh.epoch
        return .restarted(epoch: fresh.epoch)
    }

    private func isNewRun(_ opened: SubscriptionSettings.Opened) -> Bool {
        if let known = epoch, let now = opened.epoch { return known != now }
        // No epoch to compare: only a sequence that went backwards tells.
        return opened.next <= position
    }

    private mutating func install(_ opened: SubscriptionSettings.Opened) {
        phase = .streaming(opened.socket)
        frames = opened.frames
    }

    private mutating func closeConnection() {
        if case .streaming(let socket) = phase { socket.shutdown() }
        frames = FrameReader(maxFrameBytes: settings.maxFrameBytes)
    }

    /// Ends the connection (the iteration is over).
    mutating func finish() {
        if case .streaming(let socket) = phase { socket.shutdown() }
        control.cancel()
    }
}
