import Glibc
import Synchronization

/// The cancellation signal of offloaded work (`Reply.offload`).
///
/// The engine raises it when the work outlives the shutdown's grace period:
/// its client has been answered with an error and closed, so whatever the
/// work still does is wasted. Long work checks it between steps and gives
/// up (throwing or returning anything: the reply goes nowhere).
///
/// ```swift
/// return .offload {
///     for file in files {
///         if OffloadCancellation.current?.isCancelled == true { throw CancellationError() }
///         try scan(file)
///     }
///     return OffloadedReply(bytes: OkFrame.empty)
/// }
/// ```
public final class OffloadCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)

    init() {}

    public var isCancelled: Bool {
        cancelled.load(ordering: .acquiring)
    }

    func cancel() {
        cancelled.store(true, ordering: .releasing)
    }

    /// The signal of the offloaded work running on this thread; nil outside
    /// offloaded work.
    public static var current: OffloadCancellation? {
        guard let pointer = pthread_getspecific(key) else { return nil }
        return Unmanaged<OffloadCancellation>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Runs `work` with `current` set to this signal on the calling thread.
    func whileCurrent<T>(_ work: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(Self.key)
        pthread_setspecific(Self.key, Unmanaged.passUnretained(self).toOpaque())
        defer { pthread_setspecific(Self.key, previous) }
        return try work()
    }

    /// One thread-specific slot for every engine in the process.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, nil)
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()
}
