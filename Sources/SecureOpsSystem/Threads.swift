import CSecureOpsSystem
import Glibc

/// Plain threads of the process's own, for work that must not take a
/// thread from the Dispatch pool (the engine's loop, the onKill runner).
public enum Threads {
    /// Starts a thread that runs `body` once. The body is handed to the
    /// new thread (`sending`): the caller must not use what it captured.
    public static func start(_ body: sending @escaping () -> Void) -> Result<pthread_t, SystemError> {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            box.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return .failure(SystemError("pthread_create", "(thread)", code: rc))
        }
        return .success(thread)
    }

    /// Names the calling thread as `top -H` shows it (at most 15 bytes).
    public static func nameCurrentThread(_ name: String) {
        cs_set_thread_name(String(name.utf8.prefix(15))!)
    }

    /// Carries the body to the new thread. Sound because the sender gave it
    /// up (`sending`) and only the new thread runs it.
    private final class Body: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
}
