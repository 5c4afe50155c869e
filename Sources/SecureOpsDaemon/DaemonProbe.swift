import SecureOpsSystem
import Glibc
import SecureOpsEngine

/// Whether a live daemon listens on a socket path.
///
/// The engine's check, not a bare connect(): right after a daemon is
/// killed (-9), the kernel's asynchronous io_uring teardown can keep its
/// listening socket accepting for a moment, and a restart that took that
/// for a live server refused to start (seen in the journal's crash trials).
public enum DaemonProbe {
    public static func isServing(socketPath: String) -> Bool {
        UnixListener.isAnswering(path: socketPath)
    }
}
