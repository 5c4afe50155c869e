import SecureOpsSystem
import Glibc
import SecureOpsEngine

/// Whether a daemon answers on a socket path (connect succeeds).
public enum DaemonProbe {
    public static func isServing(socketPath: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return UnixSocketAddress.connect(fd, to: Array(socketPath.utf8)) == 0
    }
}
