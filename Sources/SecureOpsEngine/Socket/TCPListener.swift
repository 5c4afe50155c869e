import CURing // for the socket constants: in whole-module (release) builds Glibc alone leaves them unresolved here
import Glibc

/// A listening TCP socket on an IP literal.
///
/// `SO_REUSEADDR` so a restarted server can bind while old connections sit
/// in TIME_WAIT; an IPv6 listener is IPv6 only (`IPV6_V6ONLY`), so "::"
/// and "0.0.0.0" are two listeners a configuration names explicitly rather
/// than one that silently takes both.
struct TCPListener {
    let fd: Int32
    /// As bound: with the port the kernel picked when 0 was asked.
    let address: TCPAddress

    init(_ requested: TCPAddress, backlog: Int32) throws(EngineError) {
        guard var storage = requested.socketAddress() else {
            throw .invalidListenAddress("\(requested.host) is not an IPv4 or IPv6 address; give an IP literal such as 127.0.0.1, ::1, 0.0.0.0 or ::")
        }
        let family = Int32(storage.ss_family)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .listenerSetup(operation: "socket()", address: "\(requested)", errno: errno) }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
        let length = family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        let bound = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard bound == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .listenerSetup(operation: "bind()", address: "\(requested)", errno: code)
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .listenerSetup(operation: "listen()", address: "\(requested)", errno: code)
        }
        self.fd = fd
        address = TCPAddress.local(of: fd) ?? requested
    }

    func close() {
        Glibc.close(fd)
    }

    /// Small frames go out at once: a request-response protocol must not
    /// wait for Nagle's algorithm to coalesce them with the next one.
    static func configureAccepted(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }
}
