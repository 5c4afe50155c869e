import Glibc

/// A value behind a pthread mutex with a condition variable: the
/// forwarder's thread sleeps on it until there is work or a deadline,
/// and the threads that make work (notify, acks, connection events) wake
/// it. Critical sections are short and never call into libnats, so a
/// caller of `notify` never waits for the network.
final class ConditionLock<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private let value: UnsafeMutablePointer<Value>

    init(_ initial: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Deadlines on the monotonic clock: a wall-clock step must not
        // stretch or skip a wait.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        value = .allocate(capacity: 1)
        value.initialize(to: initial)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        value.deinitialize(count: 1)
        mutex.deallocate()
        condition.deallocate()
        value.deallocate()
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }

    /// Wakes the waiting thread (call after changing what it waits for).
    func signal() {
        pthread_cond_signal(condition)
    }

    /// Waits until `ready` holds or `deadline` passes (nil: no deadline),
    /// then runs `body` under the lock.
    func wait<R>(until deadline: ContinuousClock.Instant?, for ready: (Value) -> Bool, then body: (inout Value) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !ready(value.pointee) {
            if let deadline {
                let remaining = ContinuousClock.now.duration(to: deadline)
                if remaining <= .zero { break }
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                let (seconds, attoseconds) = remaining.components
                var nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
                var wake = timespec(tv_sec: now.tv_sec + Int(seconds) + nanoseconds / 1_000_000_000, tv_nsec: 0)
                nanoseconds %= 1_000_000_000
                wake.tv_nsec = nanoseconds
                pthread_cond_timedwait(condition, mutex, &wake)
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        return body(&value.pointee)
    }
}
