import CURing
import SecureOpsSystem
import Glibc
import SecureOpsEngine

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// Plain Unix-domain stream sockets, the way any client would open them.
enum UnixSocket {
    /// A blocking connect. On a Unix socket it returns as soon as the
    /// connection is queued in the listener's backlog (and blocks while the
    /// backlog is full), so a loop of these is an accept storm.
    static func connect(_ path: String) throws -> Int32 {
        let bytes = Array(path.utf8)
        guard bytes.count <= UnixSocketAddress.maximumPathBytes else {
            throw BenchError("socket path \(path) is longer than the 107 bytes a Unix socket address holds; use a shorter --socket")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw BenchError("cannot create a socket: \(errnoText()) (descriptor limit \(raiseDescriptorLimit()); raise it with ulimit -n)")
        }
        while true {
            let rc = UnixSocketAddress.connect(fd, to: bytes)
            if rc == 0 { return fd }
            let code = errno
            if code == EINTR { continue }
            close(fd)
            throw BenchError("cannot connect to \(path): \(errnoText(code))")
        }
    }

    /// One non-blocking read behind the unfinished line the previous read
    /// left: copies `carry` to the front of `buffer`, then receives up to
    /// `capacity` bytes after it. Returns the carry's length and what
    /// `recv` returned (bytes, 0 for end of stream, -1 with errno).
    @inline(__always)
    static func receive(_ fd: Int32, after carry: [UInt8], into buffer: UnsafeMutablePointer<UInt8>, capacity: Int) -> (carried: Int, received: Int) {
        let carried = carry.count
        if carried > 0 { carry.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: carried) } }
        return (carried, recv(fd, buffer + carried, capacity, Int32(MSG_DONTWAIT)))
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Writes everything, waiting for room if the socket is non-blocking.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if n > 0 { written += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&poller, 1, 100)
                continue
            }
            throw BenchError("send failed: \(errnoText())")
        }
    }

    /// The pid of the process serving `fd`'s peer (SO_PEERCRED), so the tool
    /// can read the server's memory and CPU from /proc whoever started it.
    static func peerPID(_ fd: Int32) -> Int32? {
        guard case .success(let server) = PeerCred.of(socket: fd), server.pid > 0 else { return nil }
        return server.pid
    }
}

/// A level-triggered epoll set. The tool's own loop: one thread, every
/// socket non-blocking, one `recv` per ready socket per turn into one large
/// buffer.
///
/// Swift's Glibc module does not include <sys/epoll.h>, so the three calls
/// are looked up in libc once and `struct epoll_event` is laid out by hand
/// (packed, 12 bytes, on x86_64; 16 bytes elsewhere).
final class Poller {
    let fd: Int32
    private let events: UnsafeMutableRawPointer
    let capacity: Int

    private typealias CreateFunction = @convention(c) (Int32) -> Int32
    private typealias ControlFunction = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    private typealias WaitFunction = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32

    private struct Calls: @unchecked Sendable {
        let create: CreateFunction
        let control: ControlFunction
        let wait: WaitFunction
    }

    private static let calls: Calls? = {
        guard let libc = dlopen(nil, RTLD_NOW),
              let create = dlsym(libc, "epoll_create1"),
              let control = dlsym(libc, "epoll_ctl"),
              let wait = dlsym(libc, "epoll_wait") else { return nil }
        return Calls(create: unsafeBitCast(create, to: CreateFunction.self),
                     control: unsafeBitCast(control, to: ControlFunction.self),
                     wait: unsafeBitCast(wait, to: WaitFunction.self))
    }()

    #if arch(x86_64)
    private static let eventStride = 12
    private static let dataOffset = 4
    #else
    private static let eventStride = 16
    private static let dataOffset = 8
    #endif

    private let control: ControlFunction
    private let waitCall: WaitFunction

    init(capacity: Int = 1024) throws {
        guard let calls = Self.calls else { throw BenchError("epoll is not available in this libc") }
        control = calls.control
        waitCall = calls.wait
        fd = calls.create(O_CLOEXEC)  // EPOLL_CLOEXEC == O_CLOEXEC
        guard fd >= 0 else { throw BenchError("epoll_create1 failed: \(errnoText())") }
        self.capacity = capacity
        events = .allocate(byteCount: capacity * Self.eventStride, alignment: 8)
    }

    deinit {
        events.deallocate()
        close(fd)
    }

    // <sys/epoll.h> defines these through an enum Swift does not import.
    static let readable: UInt32 = 0x001  // EPOLLIN
    static let writable: UInt32 = 0x004  // EPOLLOUT
    static let hangUp: UInt32 = 0x008 | 0x010 | 0x2000  // EPOLLERR | EPOLLHUP | EPOLLRDHUP
    private static let add = Int32(1), delete = Int32(2), modify = Int32(3)

    private func change(_ operation: Int32, _ socket: Int32, token: UInt64, events mask: UInt32) -> Int32 {
        var event: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &event) { raw in
            raw.storeBytes(of: mask, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: token, toByteOffset: Self.dataOffset, as: UInt64.self)
            return control(fd, operation, socket, raw.baseAddress)
        }
    }

    func add(_ socket: Int32, token: UInt64, events mask: UInt32 = Poller.readable) throws {
        guard change(Self.add, socket, token: token, events: mask) == 0 else {
            throw BenchError("epoll_ctl(ADD) failed: \(errnoText())")
        }
    }

    func modify(_ socket: Int32, token: UInt64, events mask: UInt32) {
        _ = change(Self.modify, socket, token: token, events: mask)
    }

    func remove(_ socket: Int32) {
        _ = change(Self.delete, socket, token: 0, events: 0)
    }

    /// Waits up to `timeoutMilliseconds` (0: just look) and calls `body`
    /// with each ready token and its event mask.
    @inline(__always)
    func wait(timeoutMilliseconds: Int32, _ body: (UInt64, UInt32) -> Void) {
        let n = waitCall(fd, events, Int32(capacity), timeoutMilliseconds)
        guard n > 0 else { return }
        for i in 0..<Int(n) {
            let event = events + i * Self.eventStride
            body(event.loadUnaligned(fromByteOffset: Self.dataOffset, as: UInt64.self),
                 event.loadUnaligned(as: UInt32.self))
        }
    }
}
