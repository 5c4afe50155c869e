import Glibc
import SecureOpsSystem

/// A blocking connection to `secureopsd`: the CLI, the tests and scripts
/// that want one thread and no concurrency use it.
///
/// Typed calls (`ping()`, `status()`, `publish(_:)`, ...) each take a
/// `timeout:` (default ``requestTimeout``) and throw `IpcError`:
/// `.server`/`.unauthorized` for an `err` reply, `.timedOut`, and
/// `.connectionLost` when the daemon closes the connection (it stopped or
/// crashed) before answering. A lost connection stays lost: connect again.
/// (The async client, ``SecureOpsAsyncClient``, can reconnect by itself.)
///
/// One receive buffer lives as long as the connection, so bytes read past
/// a frame (a pushed alert right behind a reply) are never lost; alerts that
/// arrive while a call waits for its reply are kept for ``nextPush(timeout:)``.
/// Not for use from several threads at once.
public final class SecureOpsConnection {
    public let path: String
    /// How long a call waits for its reply when it is given no `timeout:`.
    public var requestTimeout: RequestTimeout = .seconds(30)

    private var fd: Int32
    private var reader: FrameReader
    private var sawEndOfStream = false
    /// Why a write failed, when the daemon had already closed the
    /// connection: reported once its last frames (which say why) are read.
    private var writeFailure: String?
    private var queuedPushes: [IpcResponse] = []
    /// Replies still to come for calls that timed out: read and dropped
    /// before the next call's, so replies stay matched to calls.
    private var abandonedReplies = 0
    private let decoder = FastJSONDecoder()

    /// The longest frame accepted from the daemon by default: an `alerts`
    /// reply holds up to 2 MiB of alerts.
    public static let defaultMaxFrameBytes = 16 << 20

    /// Connects to the daemon's socket, and checks that the process serving
    /// it is one `trust` accepts before anything is sent.
    public static func connect(
        to path: String = WireDefaults.socketPath(), trust: ServerTrust = .fromEnvironment,
        maxFrameBytes: Int = defaultMaxFrameBytes
    ) throws(IpcError) -> SecureOpsConnection {
        let bytes = Array(path.utf8)
        guard bytes.count <= UnixSocketAddress.maximumPathBytes else {
            throw .transport("cannot connect to \(path): the path is longer than the 107 bytes a Unix socket address holds")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .transport("cannot create a socket: \(String(cString: strerror(errno)))") }
        let rc = UnixSocketAddress.connect(fd, to: bytes)
        guard rc == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .transport("cannot connect to \(path): \(String(cString: strerror(code))) (is secureopsd running? `make run` starts it)")
        }
        do {
            try trust.check(socket: fd, path: path)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return SecureOpsConnection(fd: fd, path: path, maxFrameBytes: maxFrameBytes)
    }

    init(fd: Int32, path: String, maxFrameBytes: Int) {
        self.fd = fd
        self.path = path
        reader = FrameReader(maxFrameBytes: maxFrameBytes)
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// The raw descriptor, for callers that poll several connections.
    public var fileDescriptor: Int32 { fd }

    // MARK: - Calls

    /// Sends `call`'s request and reads until its reply, keeping pushed
    /// frames for `nextPush`.
    func perform<Result>(_ call: Call<Result>, timeout: RequestTimeout?) throws(IpcError) -> Result {
        try send(call.request)
        let effective = timeout ?? requestTimeout
        let deadline = effective.seconds.map { SystemClock.monotonicSeconds() + $0 }
        while true {
            let read: BlockingRead<Result>?
            do {
                read = try nextFrame(deadline: deadline, waitingFor: "no reply to \(call.verb) from \(path) within \(effective)") { frame in
                    if abandonedReplies > 0 {
                        // Ping's reading takes any reply (its payload is
                        // any object): it tells replies from pushes.
                        if case .reply = TypedCall.ping.interpret(frame, decoder) { return .abandonedCallsReply }
                    }
                    let interpreted = call.interpret(frame, decoder)
                    if case .pushed = interpreted, let push = try? decoder.decode(IpcResponse.self, from: frame) {
                        queuedPushes.append(push)
                    }
                    return .thisCalls(interpreted)
                }
            } catch .timedOut(let what) {
                abandonedReplies += 1
                throw .timedOut(what)
            }
            switch read {
            case .abandonedCallsReply?:
                abandonedReplies -= 1
            case .thisCalls(.reply(let result))?:
                return try result.get()
            case .thisCalls(.pushed)?:
                continue
            case .thisCalls(.corrupt(let why))?:
                throw .codec("undecodable frame from \(path): \(why)")
            case nil:
                throw .connectionLost(writeFailure ?? "\(path) closed the connection before answering \(call.verb)")
            }
        }
    }

    /// Sends a request and returns its reply, waiting at most `timeout`
    /// seconds (nil: as long as it takes). Alerts that arrive first are
    /// kept for `nextPush`. An `err` reply is returned, not thrown.
    public func request(_ request: IpcRequest, timeout: Double? = 30) throws(IpcError) -> IpcResponse {
        try perform(.raw(request), timeout: timeout.map { .seconds($0) } ?? .never)
    }

    /// The next reply (anything but a pushed alert or lag notice), waiting
    /// at most `timeout` seconds, for requests sent with `send`.
    public func reply(timeout: Double? = 30) throws(IpcError) -> IpcResponse {
        while true {
            guard let response = try readResponse(timeout: timeout) else {
                throw .connectionLost(writeFailure ?? "\(path) closed the connection before replying")
            }
            if case .alert = response {
                queuedPushes.append(response)
            } else if response.isLagNotice {
                queuedPushes.append(response)
            } else {
                return response
            }
        }
    }

    /// The next pushed frame on a subscription: an alert or a lag notice.
    /// Nil at end of stream. Replies to requests are never returned here.
    public func nextPush(timeout: Double? = nil) throws(IpcError) -> IpcResponse? {
        if !queuedPushes.isEmpty { return queuedPushes.removeFirst() }
        while true {
            guard let response = try readResponse(timeout: timeout) else { return nil }
            switch response {
            case .alert: return response
            case .err where response.isLagNotice: return response
            default: continue
            }
        }
    }

    // MARK: - Writing

    public func send(_ request: IpcRequest) throws(IpcError) {
        try sendRaw(request.frame)
    }

    /// Writes bytes as they are (tests use this for malformed input).
    ///
    /// If the daemon has already closed the connection (it refused this
    /// peer, say), the write error is held back: the daemon's last frames,
    /// which explain why, are still readable and take precedence.
    public func sendRaw(_ bytes: [UInt8]) throws(IpcError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EPIPE || errno == ECONNRESET) {
                writeFailure = "write to \(path) failed: \(String(cString: strerror(errno)))"
                return
            }
            guard n > 0 else { throw .connectionLost("write to \(path) failed: \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    /// Half-closes: tells the daemon nothing more will be sent.
    public func shutdownWrite() {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: - Reading

    /// The next frame (without its newline), or nil at end of stream.
    /// `timeout` in seconds; nil waits forever.
    public func readFrame(timeout: Double? = nil) throws(IpcError) -> [UInt8]? {
        try nextFrame(deadline: timeout.map { SystemClock.monotonicSeconds() + $0 }, waitingFor: "no complete frame from \(path)") { Array($0) }
    }

    /// The next frame decoded.
    public func readResponse(timeout: Double? = nil) throws(IpcError) -> IpcResponse? {
        let decoded: Result<IpcResponse, IpcError>? = try nextFrame(
            deadline: timeout.map { SystemClock.monotonicSeconds() + $0 }, waitingFor: "no complete frame from \(path)"
        ) { frame in
            do {
                return .success(try decoder.decode(IpcResponse.self, from: frame))
            } catch {
                return .failure(.codec("undecodable frame from \(path): \(error)"))
            }
        }
        return try decoded?.get()
    }

    /// Hands the next frame to `body` in place; nil at end of stream.
    /// `waitingFor` says what a timeout missed.
    private func nextFrame<Result>(
        deadline: Double?, waitingFor: @autoclosure () -> String, _ body: (UnsafeRawBufferPointer) -> Result
    ) throws(IpcError) -> Result? {
        while true {
            if let result = try reader.nextFrame(body) { return result }
            if sawEndOfStream { return nil }
            try fill(deadline: deadline, waitingFor: waitingFor())
        }
    }

    private func fill(deadline: Double?, waitingFor: String) throws(IpcError) {
        guard fd >= 0 else { throw .transport("the connection to \(path) was closed") }
        if let deadline {
            let remaining = deadline - SystemClock.monotonicSeconds()
            guard remaining > 0 else { throw .timedOut(waitingFor) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining * 1000 + 1, Double(Int32.max))))
            if ready == 0 { throw .timedOut(waitingFor) }
        }
        switch reader.receive(from: fd, nonBlocking: false) {
        case .bytes, .wouldBlock: return
        case .endOfStream: sawEndOfStream = true
        case .failed(let code): throw .connectionLost("read from \(path) failed: \(String(cString: strerror(code)))")
        }
    }
}

/// A frame a blocking call read.
private enum BlockingRead<Result> {
    case thisCalls(Interpreted<Result>)
    /// The late reply to a call that timed out: dropped.
    case abandonedCallsReply
}

