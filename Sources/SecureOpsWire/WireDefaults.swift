import SecureOpsJSON
import Glibc

/// Defaults WIRE.md fixes for every client and the daemon.
public enum WireDefaults {
    /// `$XDG_RUNTIME_DIR/secureops/secureopsd.sock` when that variable is
    /// set, else `/run/secureops/secureopsd.sock` for root, else
    /// `/tmp/secureops-$UID/secureopsd.sock`.
    public static func socketPath() -> String {
        if let runtime = environment("XDG_RUNTIME_DIR"), !runtime.isEmpty {
            return runtime + "/secureops/secureopsd.sock"
        }
        let uid = getuid()
        return uid == 0 ? "/run/secureops/secureopsd.sock" : "/tmp/secureops-\(uid)/secureopsd.sock"
    }

    /// The largest frame accepted by default, not counting the newline.
    public static let maxFrameBytes = 1 << 20

    /// The number of alerts `alerts` returns without a `limit`.
    public static let alertsLimit = 100
    /// The most alerts one `alerts` reply holds, whatever `limit` asks.
    public static let alertsLimitMaximum = 1000
    /// The most bytes of alerts one `alerts` reply holds (the newest alert
    /// always); with fewer than asked for because of it, the reply says
    /// `"truncated":true`.
    public static let alertsReplyMaxBytes = 2 << 20

    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}
