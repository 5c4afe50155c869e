import Glibc

/// Where an engine listens (`EngineConfiguration.listeners`).
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// A Unix-domain stream socket at this path (at most 107 bytes), with
    /// the mode `EngineConfiguration.socketMode`. Its peers come with
    /// credentials the kernel vouches for (`ConnectionInfo.Peer.local`).
    case unix(path: String)
    /// A TCP socket on an IPv4 or IPv6 address. Its peers come with an
    /// address and nothing that says who they are
    /// (`ConnectionInfo.Peer.remote`): `admit` decides.
    case tcp(TCPAddress)

    /// A TCP listener on `host`, an IP literal ("127.0.0.1", "::1",
    /// "0.0.0.0", "::"), and `port` (0: any free port; `Engine.listeners`
    /// then says which).
    public static func tcp(host: String, port: UInt16) -> ListenAddress {
        .tcp(TCPAddress(host: host, port: port))
    }

    public var description: String {
        switch self {
        case .unix(let path): path
        case .tcp(let address): "tcp://\(address)"
        }
    }
}

/// An IP address and port, as text: "127.0.0.1", "::1".
public struct TCPAddress: Sendable, Hashable, CustomStringConvertible {
    /// An IPv4 or IPv6 literal, without brackets.
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// "127.0.0.1:8080", "[::1]:8080".
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The socket address this names, or nil when `host` is not an IP
    /// literal (names are not resolved: a listener's address should not
    /// depend on DNS at start-up).
    func socketAddress() -> sockaddr_storage? {
        var storage = sockaddr_storage()
        let bracketless = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let parsed: Bool = withUnsafeMutableBytes(of: &storage) { raw in
            if bracketless.contains(":") {
                let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                address.pointee.sin6_family = sa_family_t(AF_INET6)
                address.pointee.sin6_port = port.bigEndian
                return inet_pton(AF_INET6, bracketless, &address.pointee.sin6_addr) == 1
            }
            let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
            address.pointee.sin_family = sa_family_t(AF_INET)
            address.pointee.sin_port = port.bigEndian
            return inet_pton(AF_INET, bracketless, &address.pointee.sin_addr) == 1
        }
        return parsed ? storage : nil
    }

    /// The address in `storage` (IPv4 or IPv6), as the kernel filled it in.
    init?(_ storage: sockaddr_storage) {
        var storage = storage
        let family = Int32(storage.ss_family)
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let decoded: (String, UInt16)? = withUnsafeBytes(of: &storage) { raw in
            switch family {
            case AF_INET:
                var address = raw.load(as: sockaddr_in.self)
                guard inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count)) != nil else { return nil }
                return (String(cString: text), UInt16(bigEndian: address.sin_port))
            case AF_INET6:
                var address = raw.load(as: sockaddr_in6.self)
                guard inet_ntop(AF_INET6, &address.sin6_addr, &text, socklen_t(text.count)) != nil else { return nil }
                return (String(cString: text), UInt16(bigEndian: address.sin6_port))
            default:
                return nil
            }
        }
        guard let (host, port) = decoded else { return nil }
        self.init(host: host, port: port)
    }

    /// The remote end of a connected TCP socket.
    static func peer(of fd: Int32) -> TCPAddress? {
        socketName(fd, getpeername)
    }

    /// The local end of a bound TCP socket (the port the kernel picked for 0).
    static func local(of fd: Int32) -> TCPAddress? {
        socketName(fd, getsockname)
    }

    private static func socketName(
        _ fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> TCPAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
        }
        return rc == 0 ? TCPAddress(storage) : nil
    }
}
