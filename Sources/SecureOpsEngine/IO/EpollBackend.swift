import CSecureOpsSystem
import Glibc
import Logging

/// The epoll backend: for hosts where io_uring is off (a container's
/// default seccomp profile, `kernel.io_uring_disabled`, an old kernel).
/// Level-triggered readiness, then the system calls themselves, all
/// non-blocking (`MSG_DONTWAIT`), every one of them in this file:
///
/// | server asks     | here                                                    |
/// |-----------------|---------------------------------------------------------|
/// | armAccept       | listener in the set (`EPOLLIN`); `accept4` when ready    |
/// | armReceive      | socket in the set (`EPOLLIN`); `recv` into one buffer    |
/// | send            | `sendmsg` now; if the socket is full, `EPOLLOUT` and again |
/// | armHangup       | socket in the set with no events (`EPOLLHUP` is implied) |
/// | cancel…         | interest dropped; the completion is owed and delivered  |
/// | (wake-ups)      | the inbox's eventfd in the set, read when ready         |
///
/// Completions the server is owed (a cancelled receive, a send that went out
/// at once) wait in `owed` and are delivered by the next `wait`, never from
/// the call that caused them: the same order of events as io_uring gives,
/// so the server above cannot tell the two apart.
///
/// A socket is in the epoll set only while something is armed on it: a
/// level-triggered set would otherwise report a hung-up peer on every wait.
final class EpollBackend: IOBackend {
    private let epoll: Int32
    private let wakeFD: Int32
    private let logger: Logger
    private let ready: UnsafeMutablePointer<cs_epoll_event>
    private let readyCapacity = 1024
    /// Where `recv` reads; the bytes are handed to the server and copied
    /// out by it (a partial line) before the next read.
    private let receiveBuffer: UnsafeMutableRawPointer
    private let receiveBufferSize = 64 << 10
    /// Bytes read from one socket per wait, so one busy client cannot
    /// starve the rest (Redis's 64 KiB per client per pass, ×4).
    private let receiveBudget = 256 << 10

    /// What is armed on a connection's socket, by descriptor.
    private struct Socket {
        var connection: ConnectionID
        var receiving = false
        var hangupWatched = false
        /// A send that met a full socket and waits for `EPOLLOUT`.
        var blockedSend: SendOperation?
        /// The events it is registered with; nil while not in the set.
        var registered: UInt32?
    }

    @exclusivity(unchecked) private var sockets: [Socket?] = []
    /// Listener index → descriptor, while its accept is armed.
    @exclusivity(unchecked) private var listeners: [Int: Int32] = [:]
    @exclusivity(unchecked) private var owed: [Owed] = []
    @exclusivity(unchecked) private var delivering: [Owed] = []

    private enum Owed {
        case receiveEnded(ConnectionID, ReceiveEnd)
        case sendCompleted(ConnectionID, Int32)
        case hangupCompleted(ConnectionID, Int32)
        case acceptEnded(Int)
    }

    /// What the 64 bits registered with a descriptor say.
    private enum Source {
        static let wake: UInt64 = 1 << 62
        static let listener: UInt64 = 1 << 61
    }

    init(wakeFD: Int32, logger: Logger) throws(EngineError) {
        let fd = cs_epoll_create()
        guard fd >= 0 else { throw .socketSetup(operation: "epoll_create1()", path: "(event loop)", errno: -fd) }
        epoll = fd
        self.wakeFD = wakeFD
        self.logger = logger
        ready = .allocate(capacity: readyCapacity)
        receiveBuffer = .allocate(byteCount: receiveBufferSize, alignment: 16)
        let rc = cs_epoll_ctl(epoll, 1, wakeFD, CS_EPOLLIN, Source.wake)
        guard rc == 0 else {
            Glibc.close(fd)
            ready.deallocate()
            receiveBuffer.deallocate()
            throw .socketSetup(operation: "epoll_ctl(ADD) of the wake-up eventfd", path: "(event loop)", errno: -rc)
        }
    }

    deinit {
        Glibc.close(epoll)
        ready.deallocate()
        receiveBuffer.deallocate()
    }

    var kind: IOBackendKind { .epoll }
    var description: String { "epoll" }
    var rearmBatchAfterStarvation: Int { .max }
    var overflowCount: Int { 0 }

    // MARK: - Operations

    func armAccept(listener: Int, fd: Int32) {
        assert(listeners[listener] == nil, "accept armed twice")
        let rc = cs_epoll_ctl(epoll, 1, fd, CS_EPOLLIN, Source.listener | UInt64(listener))
        guard rc == 0 else {
            // Reported like a failed accept; the server retries shortly.
            owed.append(.acceptEnded(listener))
            logger.warning("epoll_ctl(ADD) of listener \(listener) failed: \(String(cString: strerror(-rc)))")
            return
        }
        listeners[listener] = fd
    }

    func cancelAccept(listener: Int) {
        guard let fd = listeners.removeValue(forKey: listener) else { return }
        _ = cs_epoll_ctl(epoll, 2, fd, 0, 0)
        owed.append(.acceptEnded(listener))
    }

    func armReceive(_ connection: ConnectionID, fd: Int32) {
        update(fd, for: connection) { $0.receiving = true }
    }

    func cancelReceive(_ connection: ConnectionID, fd: Int32) {
        guard let socket = socket(fd, connection), socket.receiving else { return }
        update(fd, for: connection) { $0.receiving = false }
        owed.append(.receiveEnded(connection, .cancelled))
    }

    func send(_ operation: SendOperation, for connection: ConnectionID, fd: Int32) {
        let result = attemptSend(operation, fd: fd)
        if result == -EAGAIN {
            update(fd, for: connection) { $0.blockedSend = operation }
        } else {
            owed.append(.sendCompleted(connection, result))
        }
    }

    func armHangup(_ connection: ConnectionID, fd: Int32) {
        update(fd, for: connection) { $0.hangupWatched = true }
    }

    func cancelHangup(_ connection: ConnectionID, fd: Int32) {
        guard let socket = socket(fd, connection), socket.hangupWatched else { return }
        update(fd, for: connection) { $0.hangupWatched = false }
        owed.append(.hangupCompleted(connection, -ECANCELED))
    }

    func cancelAll(_ connection: ConnectionID, fd: Int32) {
        guard let socket = socket(fd, connection) else { return }
        if socket.receiving { owed.append(.receiveEnded(connection, .cancelled)) }
        if socket.blockedSend != nil { owed.append(.sendCompleted(connection, -ECANCELED)) }
        if socket.hangupWatched { owed.append(.hangupCompleted(connection, -ECANCELED)) }
        release(fd: fd)
    }

    func release(fd: Int32) {
        guard Int(fd) < sockets.count, let socket = sockets[Int(fd)] else { return }
        if socket.registered != nil { _ = cs_epoll_ctl(epoll, 2, fd, 0, 0) }
        sockets[Int(fd)] = nil
    }

    /// One `sendmsg` of what the operation still holds: bytes sent, or
    /// `-errno` (`-EAGAIN`: the socket is full).
    private func attemptSend(_ operation: SendOperation, fd: Int32) -> Int32 {
        operation.prepareHeader()
        while true {
            let sent = sendmsg(fd, operation.header, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            if sent >= 0 { return Int32(truncatingIfNeeded: sent) }
            if errno == EINTR { continue }
            return errno == EWOULDBLOCK ? -EAGAIN : -errno
        }
    }

    // MARK: - Registrations

    private func socket(_ fd: Int32, _ connection: ConnectionID) -> Socket? {
        guard Int(fd) < sockets.count, let socket = sockets[Int(fd)], socket.connection == connection else { return nil }
        return socket
    }

    /// Changes what is armed on `fd` and brings the epoll set in line:
    /// receiving wants `EPOLLIN`, a blocked send `EPOLLOUT`, a hang-up
    /// watch nothing but what epoll always reports; nothing armed, out of
    /// the set.
    private func update(_ fd: Int32, for connection: ConnectionID, _ change: (inout Socket) -> Void) {
        let index = Int(fd)
        if index >= sockets.count { sockets.append(contentsOf: repeatElement(nil, count: index - sockets.count + 1)) }
        var socket = sockets[index] ?? Socket(connection: connection)
        assert(socket.connection == connection, "descriptor \(fd) still registered for another connection")
        change(&socket)
        var wanted: UInt32 = 0
        if socket.receiving { wanted |= CS_EPOLLIN | CS_EPOLLRDHUP }
        if socket.blockedSend != nil { wanted |= CS_EPOLLOUT }
        let armed = socket.receiving || socket.hangupWatched || socket.blockedSend != nil
        let data = UInt64(UInt32(bitPattern: fd))
        switch (socket.registered, armed) {
        case (nil, true):
            let rc = cs_epoll_ctl(epoll, 1, fd, wanted, data)
            precondition(rc == 0, "epoll_ctl(ADD) of connection \(connection): \(String(cString: strerror(-rc)))")
            socket.registered = wanted
        case (let current?, true) where current != wanted:
            let rc = cs_epoll_ctl(epoll, 3, fd, wanted, data)
            precondition(rc == 0, "epoll_ctl(MOD) of connection \(connection): \(String(cString: strerror(-rc)))")
            socket.registered = wanted
        case (.some, false):
            _ = cs_epoll_ctl(epoll, 2, fd, 0, 0)
            socket.registered = nil
        default:
            break
        }
        sockets[index] = socket
    }

    // MARK: - Waiting

    func wait(timeoutNanoseconds: Int64, events: IOEvents) {
        let hadOwed = !owed.isEmpty
        deliverOwed(events)
        let timeout = hadOwed || !owed.isEmpty ? 0 : Int32(clamping: (timeoutNanoseconds + 999_999) / 1_000_000)
        let count = cs_epoll_wait(epoll, ready, Int32(readyCapacity), timeout)
        events.waitReturned()
        if count < 0 {
            if -count != EINTR { logger.error("epoll_wait failed: \(String(cString: strerror(-count)))") }
            return
        }
        for index in 0..<Int(count) {
            let event = ready[index]
            if event.data == Source.wake {
                drainWake()
            } else if event.data & Source.listener != 0 {
                acceptReady(listener: Int(event.data & 0xFFFF_FFFF), events: events)
            } else {
                socketReady(Int32(truncatingIfNeeded: event.data), flags: event.events, events: events)
            }
        }
    }

    private func deliverOwed(_ events: IOEvents) {
        guard !owed.isEmpty else { return }
        swap(&owed, &delivering)
        for item in delivering {
            switch item {
            case .receiveEnded(let connection, let end): events.receiveEnded(connection, end)
            case .sendCompleted(let connection, let result): events.sendCompleted(connection, result: result)
            case .hangupCompleted(let connection, let result): events.hangupCompleted(connection, result: result)
            case .acceptEnded(let listener): events.acceptEnded(listener: listener)
            }
        }
        delivering.removeAll(keepingCapacity: true)
    }

    private func drainWake() {
        var value: UInt64 = 0
        while read(wakeFD, &value, 8) == 8 {}
    }

    private func acceptReady(listener: Int, events: IOEvents) {
        for _ in 0..<256 {
            guard let fd = listeners[listener] else { return }
            let accepted = cs_accept(fd)
            if accepted >= 0 {
                events.accepted(accepted, listener: listener)
                continue
            }
            if -accepted == EAGAIN || -accepted == EWOULDBLOCK { return }
            if -accepted == EINTR { continue }
            events.acceptFailed(listener: listener, errno: -accepted)
            return
        }
    }

    /// Readiness of a connection's socket: reads while its receive is
    /// armed (within the budget), retries a blocked send, reports a
    /// hang-up. Every step looks again at what is armed: the server may
    /// have cancelled or closed from inside the previous callback.
    private func socketReady(_ fd: Int32, flags: UInt32, events: IOEvents) {
        guard Int(fd) < sockets.count, let first = sockets[Int(fd)] else { return }
        let connection = first.connection
        if first.receiving {
            var budget = receiveBudget
            while budget > 0, let socket = socket(fd, connection), socket.receiving {
                let n = recv(fd, receiveBuffer, receiveBufferSize, Int32(MSG_DONTWAIT))
                if n > 0 {
                    budget -= n
                    events.received(connection, UnsafeRawBufferPointer(start: receiveBuffer, count: n))
                    // Less than a buffer: the socket is empty for now. The
                    // set is level-triggered, so what comes next (more
                    // bytes, the end of the stream) is reported again; a
                    // second `recv` only to hear EAGAIN would be one system
                    // call more per request.
                    if n < receiveBufferSize { break }
                    continue
                }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
                let end: ReceiveEnd = n == 0 ? .endOfStream : .failed(errno)
                update(fd, for: connection) { $0.receiving = false }
                events.receiveEnded(connection, end)
                break
            }
        }
        if let socket = socket(fd, connection), let operation = socket.blockedSend,
           flags & (CS_EPOLLOUT | CS_EPOLLERR | CS_EPOLLHUP) != 0 {
            let result = attemptSend(operation, fd: fd)
            if result != -EAGAIN {
                update(fd, for: connection) { $0.blockedSend = nil }
                events.sendCompleted(connection, result: result)
            }
        }
        if let socket = socket(fd, connection), socket.hangupWatched, !socket.receiving,
           flags & (CS_EPOLLHUP | CS_EPOLLERR) != 0 {
            update(fd, for: connection) { $0.hangupWatched = false }
            events.hangupCompleted(connection, result: Int32(flags & (CS_EPOLLHUP | CS_EPOLLERR)))
        }
    }

    func shutDown(events: IOEvents) {
        for listener in Array(listeners.keys) { cancelAccept(listener: listener) }
        _ = cs_epoll_ctl(epoll, 2, wakeFD, 0, 0)
        deliverOwed(events)
    }
}
