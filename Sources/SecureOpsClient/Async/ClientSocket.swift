import Glibc
import SecureOpsSystem
import Synchronization

/// A non-blocking Unix stream socket connected to a server, whose waits go
/// through `SocketPoller` (so they honour deadlines and task cancellation).
///
/// `shutdown()` ends the connection at once (any task waiting on it wakes
/// and sees the end); the descriptor itself is closed only when the last
/// user has let go (deinit), so it is never reused under a waiting task.
final class ClientSocket: Sendable {
    let fd: Int32
    let path: String
    private let isShutDown = Atomic<Bool>(false)

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit {
        Glibc.close(fd)
    }

    /// Connects, retrying while the server's accept backlog is full, until
    /// `deadline`. Errors name the path and what to do.
    static func connect(to path: String, trust: ServerTrust, deadline: UInt64) async throws -> ClientSocket {
        let bytes = Array(path.utf8)
        guard bytes.count <= UnixSocketAddress.maximumPathBytes else {
            throw IpcError.transport("cannot connect to \(path): the path is \(bytes.count) bytes, longer than the 107 a Unix socket address holds")
        }
        var delay: UInt64 = 1_000_000
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw IpcError.transport("cannot create a socket: \(String(cString: strerror(errno)))") }
            let rc = UnixSocketAddress.connect(fd, to: bytes)
            if rc == 0 {
                do {
                    try trust.check(socket: fd, path: path)
                } catch {
                    Glibc.close(fd)
                    throw error
                }
                return ClientSocket(fd: fd, path: path)
            }
            let code = errno
            Glibc.close(fd)
            // A Unix socket's non-blocking connect fails with EAGAIN while
            // the listener's backlog is full; anything else is final.
            guard code == EAGAIN else {
                throw IpcError.transport("cannot connect to \(path): \(String(cString: strerror(code))) (is secureopsd running? `make run` starts it)")
            }
            guard SystemClock.monotonicNanoseconds() < deadline else {
                throw IpcError.timedOut("connecting to \(path): its accept backlog stayed full")
            }
            try await Task.sleep(for: .nanoseconds(Int64(delay)))
            delay = min(delay * 2, 50_000_000)
        }
    }

    /// Ends the connection in both directions now; later reads see the end
    /// of the stream, later writes fail.
    func shutdown() {
        if !isShutDown.exchange(true, ordering: .relaxed) {
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    var wasShutDown: Bool { isShutDown.load(ordering: .relaxed) }

    /// Writes all of `bytes`, waiting for room when the socket is full.
    func send(_ bytes: [UInt8], deadline: UInt64?) async throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                written += n
                continue
            }
            let code = errno
            if n < 0 && code == EINTR { continue }
            if n < 0 && code == EAGAIN {
                try await waitReady(.writable, deadline: deadline, what: "writing to \(path)")
                continue
            }
            throw IpcError.connectionLost("write to \(path) failed: \(String(cString: strerror(code)))")
        }
    }

    /// Tries once to write without waiting; returns how many bytes went out
    /// (0 when the socket is full).
    func sendNow(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.send(fd, bytes.baseAddress!, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN { return 0 }
            throw IpcError.connectionLost("write to \(path) failed: \(String(cString: strerror(code)))")
        }
    }

    /// Reads what is available into `frames`, waiting for at least one
    /// byte (or the end) until `deadline`.
    func receive(into frames: inout FrameReader, deadline: UInt64?) async throws -> FrameReader.Received {
        while true {
            let received = frames.receive(from: fd, nonBlocking: true)
            guard received == .wouldBlock else { return received }
            try await waitReady(.readable, deadline: deadline, what: "no complete frame from \(path)")
        }
    }

    func waitReady(_ interest: SocketPoller.Interest, deadline: UInt64?, what: String) async throws {
        do {
            try await SocketPoller.shared.wait(fd: fd, for: interest, deadline: deadline)
        } catch is SocketPoller.TimedOut {
            throw IpcError.timedOut(what)
        }
    }
}
