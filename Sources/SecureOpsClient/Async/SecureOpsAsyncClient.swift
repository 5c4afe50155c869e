import Glibc
import SecureOpsSystem
import Synchronization

/// An async connection to `secureopsd`: typed requests, pipelined, with
/// timeouts and cancellation, and alert subscriptions as `AsyncSequence`s.
///
/// ```swift
/// let client = try await SecureOpsAsyncClient.connect(to: path)
/// try await client.ping()
/// let sequence = try await client.publish(AlertInput(severity: .high, source: "fs-watch", message: "ssh key read"))
/// for try await event in try await client.subscribe(since: 0, reconnect: .default) {
///     if case .alert(let alert) = event { print(alert.sequence, alert.message) }
/// }
/// ```
///
/// Requests from any number of tasks share the connection: each frame is
/// written whole, in the order the calls reach the client, and the daemon
/// answers in that order, so replies are matched without ids. A request
/// that times out or whose task is cancelled throws at once; its reply,
/// when it comes, is dropped, and the connection stays usable.
///
/// Errors are `IpcError` (`.server` with the daemon's message for an `err`
/// reply, `.unauthorized`, `.timedOut`, `.transport`), or
/// `CancellationError` when the calling task is cancelled.
///
/// Waiting never blocks a thread: sockets are non-blocking and waits park
/// on one process-wide poll thread. Let go of the client (or call `close()`)
/// and its connection closes.
public final class SecureOpsAsyncClient: Sendable {
    public struct Configuration: Sendable {
        /// How long a request waits for its reply; nil waits forever.
        /// Per call: `request(_:timeout:)`.
        public var requestTimeout: Duration? = .seconds(30)
        /// How long `connect` retries while the daemon's accept backlog is
        /// full. (A missing socket or a refused connection fails at once.)
        public var connectTimeout: Duration = .seconds(5)
        /// The longest frame accepted from the daemon; a longer one closes
        /// the connection with `IpcError.codec` instead of growing a buffer.
        public var maxFrameBytes = 16 << 20
        /// Who may serve the socket (checked before anything is sent, on
        /// every connection, reconnects included); a server it refuses is
        /// `IpcError.untrustedServer`.
        public var serverTrust = ServerTrust.fromEnvironment

        public init() {}
    }

    /// The socket path this client is connected to.
    public let path: String
    public let configuration: Configuration
    private let core: RequestPipeline

    private init(path: String, configuration: Configuration, socket: ClientSocket) {
        self.path = path
        self.configuration = configuration
        core = RequestPipeline(socket: socket, maxFrameBytes: configuration.maxFrameBytes)
        core.startReading()
    }

    deinit {
        core.close(because: .transport("the client was closed"))
    }

    /// Connects to the daemon's socket.
    public static func connect(
        to path: String = WireDefaults.socketPath(), configuration: Configuration = Configuration()
    ) async throws -> SecureOpsAsyncClient {
        let socket = try await ClientSocket.connect(to: path, trust: configuration.serverTrust, deadline: configuration.connectTimeout.deadlineFromNow)
        return SecureOpsAsyncClient(path: path, configuration: configuration, socket: socket)
    }

    /// Closes the connection; requests waiting for replies throw
    /// `IpcError.transport`. Subscriptions have their own connections and
    /// are not affected.
    public func close() {
        core.close(because: .transport("the client was closed"))
    }

    // MARK: - Requests

    /// Sends one request and returns its reply (an `err` reply is returned,
    /// not thrown), waiting at most `configuration.requestTimeout`.
    public func request(_ request: IpcRequest) async throws -> IpcResponse {
        try await self.request(request, timeout: configuration.requestTimeout)
    }

    /// Sends one request and returns its reply, waiting at most `timeout`
    /// (nil: as long as it takes).
    public func request(_ request: IpcRequest, timeout: Duration?) async throws -> IpcResponse {
        try await core.send(request.frame, deadline: timeout?.deadlineFromNow, describe: request.verb.rawValue)
    }

    public func ping() async throws {
        _ = try await expectOk(.ping)
    }

    public func status() async throws -> MonitorStatus {
        try await decodeOk(MonitorStatus.self, from: .status)
    }

    /// Publishes one alert; returns its sequence.
    public func publish(_ alert: AlertInput) async throws -> UInt64 {
        try await decodeOk(PublishResult.self, from: .publish(alert)).sequence
    }

    /// The most recent retained alerts, oldest first (at most `limit`,
    /// default 100).
    public func alerts(limit: Int? = nil) async throws -> [MonitorAlert] {
        try await decodeOk(AlertsResult.self, from: .alerts(limit: limit)).alerts
    }

    /// Trips the kill switch; returns the sequence of the kill alert.
    public func kill(reason: String?) async throws -> UInt64 {
        try await decodeOk(KillResult.self, from: .kill(reason: reason)).sequence
    }

    public func audit(_ options: AuditOptions = AuditOptions()) async throws -> AuditReport {
        try await decodeOk(AuditReport.self, from: .audit(options))
    }

    /// Reloads the policy; returns the version in force.
    public func reloadPolicy() async throws -> Int {
        try await decodeOk(ReloadResult.self, from: .reloadPolicy).policyVersion
    }

    /// Subscribes on a connection of its own (see `AlertSubscription`).
    /// Returns once the daemon has accepted the subscription, so a refusal
    /// throws here. With `reconnect`, a lost connection is re-established
    /// and the stream resumes after the last alert received.
    public func subscribe(since: UInt64? = nil, reconnect: ReconnectPolicy? = nil) async throws -> AlertSubscription {
        try await AlertSubscription.open(
            path: path, trust: configuration.serverTrust, since: since, reconnect: reconnect,
            connectTimeout: configuration.connectTimeout, replyTimeout: configuration.requestTimeout,
            maxFrameBytes: configuration.maxFrameBytes)
    }

    private func expectOk(_ request: IpcRequest) async throws -> JSONObject {
        try okPayload(try await self.request(request), for: request)
    }

    private func decodeOk<T: Decodable>(_ type: T.Type, from request: IpcRequest) async throws -> T {
        try decodePayload(T.self, try await expectOk(request), for: request)
    }
}

/// The `ok` payload of a reply, or the error an `err` reply stands for.
func okPayload(_ response: IpcResponse, for request: IpcRequest) throws(IpcError) -> JSONObject {
    switch response {
    case .ok(let payload): return payload
    case .err(let message, _, _):
        if message.hasPrefix("not authorized") { throw .unauthorized(message) }
        throw .server(message)
    case .alert: throw .codec("an alert arrived where the reply to \(request.verb.rawValue) was expected")
    }
}

func decodePayload<T: Decodable>(_ type: T.Type, _ payload: JSONObject, for request: IpcRequest) throws(IpcError) -> T {
    do {
        return try FastJSONDecoder().decode(T.self, from: RawJSON(.object(payload)).bytes)
    } catch {
        throw .codec("unexpected reply to \(request.verb.rawValue): \(error)")
    }
}

/// The request side of one connection: frames go out in call order, replies
/// come back in the same order and are handed to the waiting calls.
///
/// Replies are read on the poll thread (`SocketPoller.whenReady`), not by a
/// task: a call's timeout then measures the daemon, never how long a busy
/// cooperative pool took to schedule a reader.
final class RequestPipeline: Sendable {
    private struct Pending {
        var id: UInt64
        /// Nil once the caller gave up (timeout, cancellation): the reply
        /// is still consumed in its turn, then dropped.
        var continuation: CheckedContinuation<IpcResponse, any Error>?
        var timer: SocketPoller.Registration?
    }

    private struct State {
        var pending: [Pending] = []
        var head = 0
        var nextID: UInt64 = 1
        /// Bytes not yet written (the socket was full); written by `flush`.
        var outgoing: [UInt8] = []
        var flushing = false
        var closed: IpcError?
        /// Cancellations that arrived before their request was queued.
        var cancelledEarly: Set<UInt64> = []
        /// The armed read callback, cancelled on close.
        var reading: SocketPoller.Registration?
    }

    private let socket: ClientSocket
    private let state = Locked(State())
    private let reader: ReplyReader

    init(socket: ClientSocket, maxFrameBytes: Int) {
        self.socket = socket
        reader = ReplyReader(maxFrameBytes: maxFrameBytes)
    }

    /// Queues `frame`, writes it, and waits for its reply.
    func send(_ frame: [UInt8], deadline: UInt64?, describe verb: String) async throws -> IpcResponse {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        defer { state.withLock { _ = $0.cancelledEarly.remove(id) } }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<IpcResponse, any Error>) in
                enqueue(id: id, frame: frame, deadline: deadline, verb: verb, continuation: continuation)
            }
        } onCancel: {
            abandon(id, with: CancellationError(), cancelling: true)
        }
    }

    private func enqueue(id: UInt64, frame: [UInt8], deadline: UInt64?, verb: String, continuation: CheckedContinuation<IpcResponse, any Error>) {
        enum Outcome {
            case queued(startFlush: Bool)
            /// Not queued: the continuation is resumed with this error.
            case refused(any Error)
            /// Queued, but the connection broke: closing fails every call.
            case broken(IpcError)
        }
        let outcome = state.withLock { state -> Outcome in
            if let closed = state.closed { return .refused(closed) }
            if state.cancelledEarly.remove(id) != nil { return .refused(CancellationError()) }
            var timer: SocketPoller.Registration?
            if let deadline {
                let path = socket.path
                timer = SocketPoller.shared.schedule(at: deadline) { [weak self] in
                    self?.abandon(id, with: IpcError.timedOut("no reply to \(verb) from \(path)"), cancelling: false)
                }
            }
            state.pending.append(Pending(id: id, continuation: continuation, timer: timer))
            // Written in queue order: straight away when nothing is waiting
            // to go out, else behind what is.
            if state.outgoing.isEmpty && !state.flushing {
                do {
                    let sent = try frame.withUnsafeBytes { try socket.sendNow($0) }
                    if sent < frame.count { state.outgoing.append(contentsOf: frame[sent...]) }
                } catch {
                    return .broken((error as? IpcError) ?? .transport("write to \(socket.path) failed: \(error)"))
                }
            } else {
                state.outgoing.append(contentsOf: frame)
            }
            guard !state.outgoing.isEmpty, !state.flushing else { return .queued(startFlush: false) }
            state.flushing = true
            return .queued(startFlush: true)
        }
        switch outcome {
        case .queued(let startFlush):
            if startFlush { Task { await self.flush() } }
        case .refused(let error):
            continuation.resume(throwing: error)
        case .broken(let error):
            close(because: error)
        }
    }

    /// Writes what the socket could not take at once, waiting for room.
    private func flush() async {
        while true {
            let chunk = state.withLock { state -> [UInt8]? in
                if state.outgoing.isEmpty || state.closed != nil {
                    state.flushing = false
                    return nil
                }
                return state.outgoing
            }
            guard let chunk else { return }
            do {
                let sent = try chunk.withUnsafeBytes { try socket.sendNow($0) }
                if sent == 0 {
                    try await socket.waitReady(.writable, deadline: nil, what: "writing to \(socket.path)")
                    continue
                }
                state.withLock { $0.outgoing.removeFirst(sent) }
            } catch {
                close(because: (error as? IpcError) ?? .transport("write to \(socket.path) failed: \(error)"))
                return
            }
        }
    }

    /// The caller stops waiting for reply `id`. A cancellation may come
    /// before the request is queued (then `enqueue` refuses it); a timer
    /// exists only once it is queued, so a late one finds nothing to do.
    private func abandon(_ id: UInt64, with error: any Error, cancelling: Bool) {
        let continuation = state.withLock { state -> CheckedContinuation<IpcResponse, any Error>? in
            guard let index = state.pending[state.head...].firstIndex(where: { $0.id == id }) else {
                if cancelling { state.cancelledEarly.insert(id) }
                return nil
            }
            defer {
                state.pending[index].continuation = nil
                if let timer = state.pending[index].timer { SocketPoller.shared.cancel(timer) }
                state.pending[index].timer = nil
            }
            return state.pending[index].continuation
        }
        continuation?.resume(throwing: error)
    }

    /// Arms the read callback: runs on the poll thread whenever the socket
    /// has bytes (or has ended), one run at a time (it re-arms itself).
    func startReading() {
        let registration = SocketPoller.shared.whenReady(socket.fd, for: .readable) { [weak self] in
            self?.readAvailable()
        }
        let closed = state.withLock { state -> Bool in
            state.reading = registration
            return state.closed != nil
        }
        if closed { SocketPoller.shared.cancel(registration) }
    }

    /// Reads what is there, hands out every whole reply, re-arms.
    private func readAvailable() {
        do {
            while true {
                while let frame = try reader.buffer.nextFrame() {
                    let response: IpcResponse
                    do {
                        response = try reader.decoder.decode(IpcResponse.self, from: frame)
                    } catch {
                        throw IpcError.codec("undecodable frame from \(socket.path): \(error)")
                    }
                    // Pushed frames belong to a subscription; this
                    // connection has none (subscriptions get their own).
                    if case .alert = response { continue }
                    if response.isLagNotice { continue }
                    deliver(response)
                }
                switch reader.buffer.fill(from: socket.fd) {
                case .bytes:
                    continue
                case .wouldBlock:
                    startReading()
                    return
                case .endOfStream:
                    close(because: .transport("\(socket.path) closed the connection"))
                    return
                case .failed(let code):
                    close(because: .transport("read from \(socket.path) failed: \(String(cString: strerror(code)))"))
                    return
                }
            }
        } catch let error as IpcError {
            close(because: error)
        } catch {
            close(because: .transport("\(error)"))
        }
    }

    private func deliver(_ response: IpcResponse) {
        let waiting = state.withLock { state -> Pending? in
            guard state.head < state.pending.count else { return nil }
            let first = state.pending[state.head]
            state.head += 1
            if state.head > 64 && state.head * 2 > state.pending.count {
                state.pending.removeFirst(state.head)
                state.head = 0
            }
            return first
        }
        if let timer = waiting?.timer { SocketPoller.shared.cancel(timer) }
        waiting?.continuation?.resume(returning: response)
    }

    /// Fails every waiting call with `error` and ends the connection; later
    /// calls fail at once with the same error.
    func close(because error: IpcError) {
        let (waiting, reading) = state.withLock { state -> ([Pending], SocketPoller.Registration?) in
            guard state.closed == nil else { return ([], nil) }
            state.closed = error
            defer {
                state.pending = []
                state.head = 0
                state.outgoing = []
                state.reading = nil
            }
            return (Array(state.pending[state.head...]), state.reading)
        }
        if let reading { SocketPoller.shared.cancel(reading) }
        socket.shutdown()
        for pending in waiting {
            if let timer = pending.timer { SocketPoller.shared.cancel(timer) }
            pending.continuation?.resume(throwing: error)
        }
    }
}

/// The reading state of a `RequestPipeline`. Touched only by its read
/// callback, which the poll thread runs one at a time (each run re-arms the
/// next), hence unchecked.
private final class ReplyReader: @unchecked Sendable {
    var buffer: FrameBuffer
    let decoder = FastJSONDecoder()

    init(maxFrameBytes: Int) {
        buffer = FrameBuffer(maxFrameBytes: maxFrameBytes)
    }
}
