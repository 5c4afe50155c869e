import Glibc
import SecureOpsSystem

/// A blocking connection to `secureopsd`: the core the CLI, the tests and
/// the async client build on.
///
/// Keeps one receive buffer for the life of the connection, so bytes read
/// past a frame (a pushed alert arriving right behind a reply) are never
/// lost; alerts that arrive while waiting for a reply are queued and handed
/// out by `nextAlert`.
public final class SecureOpsConnection {
    public let path: String
    private var fd: Int32
    private var buffer: [UInt8] = []
    private var consumed = 0
    private var sawEndOfStream = false
    private var queuedPushes: [IpcResponse] = []
    private let decoder = FastJSONDecoder()

    /// Connects to the daemon's socket, and checks that the process serving
    /// it is one `trust` accepts before anything is sent.
    public static func connect(
        to path: String = WireDefaults.socketPath(), trust: ServerTrust = .fromEnvironment
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
        return SecureOpsConnection(fd: fd, path: path)
    }

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer.reserveCapacity(64 << 10)
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
            guard n > 0 else { throw .transport("write to \(path) failed: \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    private var writeFailure: String?

    /// Half-closes: tells the daemon nothing more will be sent.
    public func shutdownWrite() {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: - Reading

    /// The next frame (without its newline), or nil at end of stream.
    /// `timeout` in seconds; nil waits forever.
    public func readFrame(timeout: Double? = nil) throws(IpcError) -> [UInt8]? {
        let deadline = timeout.map { monotonicSeconds() + $0 }
        while true {
            if let newline = buffer[consumed...].firstIndex(of: 0x0A) {
                var end = newline
                if end > consumed && buffer[end - 1] == 0x0D { end -= 1 }
                let frame = Array(buffer[consumed..<end])
                consumed = newline + 1
                if consumed > 32 << 10 && consumed * 2 > buffer.count {
                    buffer.removeFirst(consumed)
                    consumed = 0
                }
                if frame.isEmpty { continue }
                return frame
            }
            if sawEndOfStream { return nil }
            try fill(deadline: deadline)
        }
    }

    /// The next frame decoded.
    public func readResponse(timeout: Double? = nil) throws(IpcError) -> IpcResponse? {
        guard let frame = try readFrame(timeout: timeout) else { return nil }
        do {
            return try decoder.decode(IpcResponse.self, from: frame)
        } catch {
            throw .codec("undecodable frame from the daemon: \(error)")
        }
    }

    /// Sends a request and returns its reply. Alerts that arrive first are
    /// kept for `nextAlert`. An `err` reply is returned, not thrown.
    public func request(_ request: IpcRequest, timeout: Double? = 30) throws(IpcError) -> IpcResponse {
        try send(request)
        return try reply(timeout: timeout)
    }

    /// The next reply (anything but a pushed alert or lag notice).
    public func reply(timeout: Double? = 30) throws(IpcError) -> IpcResponse {
        while true {
            guard let response = try readResponse(timeout: timeout) else {
                throw .transport(writeFailure ?? "\(path) closed the connection before replying")
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

    private func fill(deadline: Double?) throws(IpcError) {
        if let deadline {
            let remaining = deadline - monotonicSeconds()
            guard remaining > 0 else { throw .timedOut("no complete frame from \(path)") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(remaining * 1000 + 1, Double(Int32.max))))
            if ready == 0 { throw .timedOut("no complete frame from \(path)") }
        }
        if buffer.count - consumed == 0 {
            buffer.removeAll(keepingCapacity: true)
            consumed = 0
        }
        let old = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: 64 << 10))
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + old, 64 << 10, 0) }
        if n > 0 {
            buffer.removeLast((64 << 10) - n)
        } else {
            buffer.removeLast(64 << 10)
            if n == 0 || errno == ECONNRESET {
                // ECONNRESET after the daemon closed with our unread input:
                // everything it sent has been read; treat as end of stream.
                sawEndOfStream = true
            } else if errno != EINTR {
                throw .transport("read from \(path) failed: \(String(cString: strerror(errno)))")
            }
        }
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
