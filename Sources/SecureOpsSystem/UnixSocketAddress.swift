import Glibc

/// The one place that builds a `sockaddr_un`: for the listener, the clients,
/// the daemon's liveness probe, the benchmark tool and the tests (package
/// access: not part of the engine's public API).
package enum UnixSocketAddress {
    /// `sun_path` holds 108 bytes, one of them the terminating NUL.
    package static let maximumPathBytes = 107

    /// The address for `pathBytes`, which must be at most
    /// `maximumPathBytes` long and contain no NUL.
    package static func make(_ pathBytes: [UInt8]) -> sockaddr_un {
        precondition(pathBytes.count <= maximumPathBytes, "socket path longer than sun_path")
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        return address
    }

    /// `connect(2)` of `fd` to the socket at `pathBytes`: 0, or -1 with
    /// `errno` set (a path too long for `sun_path` gives ENAMETOOLONG).
    package static func connect(_ fd: Int32, to pathBytes: [UInt8]) -> Int32 {
        guard pathBytes.count <= maximumPathBytes else {
            errno = ENAMETOOLONG
            return -1
        }
        var address = make(pathBytes)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
