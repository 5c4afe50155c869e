import Synchronization

#if SECUREOPS_TSAN
import Glibc

/// A value behind a lock: the toolchain's `Mutex`, except in ThreadSanitizer
/// builds (`-DSECUREOPS_TSAN`, set by `scripts/test-sanitized.sh thread`).
///
/// On Linux a contended `Mutex` hands the lock over inside the kernel
/// (`FUTEX_LOCK_PI` / `FUTEX_UNLOCK_PI`), where ThreadSanitizer cannot see
/// the release and the acquire; every critical section that ever met
/// contention was then reported as a race. A pthread mutex is intercepted
/// by ThreadSanitizer, so under it the same code is checked for real races.
package final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Out of line, so that accesses are plain memory accesses ordered by
    /// the mutex (not exclusivity-checked accesses to a class property).
    private let value: UnsafeMutablePointer<Value>

    package init(_ initialValue: sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        value = .allocate(capacity: 1)
        value.initialize(to: initialValue)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    package func withLock<Result, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
#else
/// A value behind a lock: the toolchain's `Mutex`. (ThreadSanitizer builds
/// swap in a pthread mutex; see the `SECUREOPS_TSAN` branch for why.)
package typealias Locked = Mutex
#endif
