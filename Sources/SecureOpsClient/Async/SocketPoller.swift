import Glibc
import SecureOpsSystem
import Synchronization

/// Waits for client sockets to become readable or writable, and for
/// deadlines, on one thread for the whole process, and resumes the tasks
/// waiting on them.
///
/// Async clients never block a thread of Swift's cooperative pool: a task
/// that must wait for its socket parks here (a continuation plus a `poll`
/// entry) and is resumed when the kernel says the socket is ready, when its
/// deadline passes (`TimedOut`) or when the task is cancelled
/// (`CancellationError`). However many connections and subscriptions a
/// process opens, this is one thread, started on first use and living as
/// long as the process; nothing is left behind per connection.
///
/// `poll` rather than `epoll`: a client holds a handful of sockets, the set
/// changes with every wait, and `poll` takes the whole set each call with no
/// registration to undo.
final class SocketPoller: Sendable {
    static let shared = SocketPoller()

    enum Interest {
        case readable, writable

        var events: Int16 { self == .readable ? Int16(POLLIN) : Int16(POLLOUT) }
    }

    /// The deadline passed before the socket became ready.
    struct TimedOut: Error {}

    /// A callback's handle (timer or readiness), for `cancel(_:)`.
    struct Registration: Sendable {
        fileprivate let id: UInt64
    }

    private enum Wake {
        case task(CheckedContinuation<Void, any Error>)
        case callback(@Sendable () -> Void)
    }

    private struct Waiter {
        /// -1 for a plain timer (`poll` ignores negative descriptors).
        var fd: Int32
        var events: Int16
        /// CLOCK_MONOTONIC nanoseconds, or nil for no deadline.
        var deadline: UInt64?
        var wake: Wake
    }

    private struct State {
        var waiters: [UInt64: Waiter] = [:]
        /// Waits whose task was cancelled before they were registered.
        var cancelledEarly: Set<UInt64> = []
        var nextID: UInt64 = 1
        var threadStarted = false
    }

    private let state = Locked(State())
    /// The poll thread's wake-up: a byte written here makes it rebuild its
    /// set (a waiter was added or removed).
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private init() {
        var fds: [Int32] = [-1, -1]
        let rc = pipe(&fds)
        precondition(rc == 0, "SocketPoller: pipe failed: \(String(cString: strerror(errno)))")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    // MARK: - Waiting

    /// Suspends until `fd` is ready for `interest` (or has hung up or
    /// failed: the caller's next read or write says which). Throws
    /// `TimedOut` at `deadline` (CLOCK_MONOTONIC ns) and `CancellationError`
    /// if the task is cancelled.
    func wait(fd: Int32, for interest: Interest, deadline: UInt64?) async throws {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        defer {
            // A cancellation that raced with a normal wake-up left a mark.
            state.withLock { _ = $0.cancelledEarly.remove(id) }
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let registered = state.withLock { state -> Bool in
                    if state.cancelledEarly.remove(id) != nil { return false }
                    state.waiters[id] = Waiter(fd: fd, events: interest.events, deadline: deadline, wake: .task(continuation))
                    startThreadIfNeeded(&state)
                    return true
                }
                if registered {
                    wakeThread()
                } else {
                    continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                state.cancelledEarly.insert(id)
                return nil
            }
            if case .task(let continuation)? = waiter?.wake {
                continuation.resume(throwing: CancellationError())
            }
        }
    }

    /// Calls `action` on the poll thread once `deadline` (CLOCK_MONOTONIC
    /// ns) has passed, unless cancelled first. Keep `action` short.
    func schedule(at deadline: UInt64, _ action: @escaping @Sendable () -> Void) -> Registration {
        register(Waiter(fd: -1, events: 0, deadline: deadline, wake: .callback(action)))
    }

    /// Calls `action` on the poll thread once, when `fd` is ready for
    /// `interest` (or has hung up or failed), unless cancelled first. For
    /// work that must not wait for a free thread of the cooperative pool:
    /// reading replies, so a busy pool cannot make a reply look late.
    /// Keep `action` short and non-blocking.
    func whenReady(_ fd: Int32, for interest: Interest, _ action: @escaping @Sendable () -> Void) -> Registration {
        register(Waiter(fd: fd, events: interest.events, deadline: nil, wake: .callback(action)))
    }

    private func register(_ waiter: Waiter) -> Registration {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.waiters[state.nextID] = waiter
            startThreadIfNeeded(&state)
            return state.nextID
        }
        wakeThread()
        return Registration(id: id)
    }

    /// Cancels a callback that has not run yet (no effect otherwise).
    func cancel(_ registration: Registration) {
        state.withLock { _ = $0.waiters.removeValue(forKey: registration.id) }
        // No wake-up needed: a stale entry only makes the thread loop once.
    }

    private func wakeThread() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    // MARK: - The poll thread

    private func startThreadIfNeeded(_ state: inout State) {
        guard !state.threadStarted else { return }
        state.threadStarted = true
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let poller = Unmanaged<SocketPoller>.fromOpaque(raw!).takeRetainedValue()
            poller.run()
            return nil
        }, context)
        precondition(rc == 0, "SocketPoller: cannot start its thread: \(String(cString: strerror(rc)))")
        pthread_detach(thread)
    }

    private func run() {
        var descriptors: [pollfd] = []
        var ids: [UInt64] = []
        var ready: [(Wake, (any Error)?)] = []
        while true {
            descriptors.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            ids.append(0)
            let nearest = state.withLock { state -> UInt64? in
                var nearest: UInt64?
                for (id, waiter) in state.waiters {
                    descriptors.append(pollfd(fd: waiter.fd, events: waiter.events, revents: 0))
                    ids.append(id)
                    if let deadline = waiter.deadline { nearest = min(nearest ?? deadline, deadline) }
                }
                return nearest
            }
            let timeout = nearest.map { Int32(clamping: ($0 &- min($0, SystemClock.monotonicNanoseconds()) + 999_999) / 1_000_000) } ?? -1
            let count = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if count < 0 && errno != EINTR {
                // EINVAL (too many descriptors) or ENOMEM: fail every waiter
                // rather than spin.
                failAll(IpcError.transport("poll failed: \(String(cString: strerror(errno)))"))
                continue
            }
            if descriptors[0].revents != 0 { drainWakePipe() }
            let now = SystemClock.monotonicNanoseconds()
            ready.removeAll(keepingCapacity: true)
            state.withLock { state in
                for index in 1..<descriptors.count where descriptors[index].revents != 0 {
                    if let waiter = state.waiters.removeValue(forKey: ids[index]) { ready.append((waiter.wake, nil)) }
                }
                for (id, waiter) in state.waiters {
                    if let deadline = waiter.deadline, deadline <= now {
                        state.waiters[id] = nil
                        ready.append((waiter.wake, TimedOut()))
                    }
                }
            }
            for (wake, error) in ready {
                switch wake {
                case .task(let continuation):
                    if let error { continuation.resume(throwing: error) } else { continuation.resume() }
                case .callback(let action):
                    action()
                }
            }
        }
    }

    private func failAll(_ error: any Error) {
        let waiters = state.withLock { state in
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values {
            switch waiter.wake {
            case .task(let continuation): continuation.resume(throwing: error)
            case .callback(let action): action()
            }
        }
    }

    private func drainWakePipe() {
        var scratch = [UInt8](repeating: 0, count: 64)
        while scratch.withUnsafeMutableBytes({ read(wakeRead, $0.baseAddress, $0.count) }) > 0 {}
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at the ends (negative becomes 0).
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        return whole &+ UInt64(attoseconds / 1_000_000_000)
    }

    /// The CLOCK_MONOTONIC deadline this long from now.
    var deadlineFromNow: UInt64 {
        let (sum, overflow) = SystemClock.monotonicNanoseconds().addingReportingOverflow(nanoseconds)
        return overflow ? .max : sum
    }
}
