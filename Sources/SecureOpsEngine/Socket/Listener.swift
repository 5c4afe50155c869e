import Glibc
import Logging
import SecureOpsSystem

/// One listening socket of an engine, and what its connections can say
/// about who is on the other end.
enum Listener {
    case unix(UnixListener)
    case tcp(TCPListener)

    /// Binds and listens on `address`.
    static func open(_ address: ListenAddress, configuration: EngineConfiguration, logger: Logger) throws(EngineError) -> Listener {
        switch address {
        case .unix(let path):
            return .unix(try UnixListener(
                path: path, mode: mode_t(configuration.socketMode),
                directoryMode: mode_t(configuration.socketDirectoryMode),
                backlog: configuration.listenBacklog, logger: logger))
        case .tcp(let requested):
            return .tcp(try TCPListener(requested, backlog: configuration.listenBacklog))
        }
    }

    var fd: Int32 {
        switch self {
        case .unix(let listener): listener.fd
        case .tcp(let listener): listener.fd
        }
    }

    /// As bound (a TCP port 0 resolved to the port the kernel picked).
    var address: ListenAddress {
        switch self {
        case .unix(let listener): .unix(path: listener.path)
        case .tcp(let listener): .tcp(listener.address)
        }
    }

    /// Closes the socket (and removes a Unix socket's file if it is still ours).
    func close(logger: Logger) {
        switch self {
        case .unix(let listener): listener.close(logger: logger)
        case .tcp(let listener): listener.close()
        }
    }

    /// Who is on the other end of `fd`, accepted from this listener: the
    /// kernel's credentials for a Unix socket, the address for TCP.
    func peer(of fd: Int32) -> Result<ConnectionInfo.Peer, PeerLookupFailure> {
        switch self {
        case .unix:
            switch PeerCred.of(socket: fd) {
            case .success(let credentials):
                return .success(.local(credentials, groups: PeerCred.groups(ofSocket: fd)))
            case .failure(let error):
                return .failure(PeerLookupFailure(description: "\(error)"))
            }
        case .tcp:
            TCPListener.configureAccepted(fd)
            guard let address = TCPAddress.peer(of: fd) else {
                return .failure(PeerLookupFailure(description: "getpeername() on an accepted TCP connection failed: \(String(cString: strerror(errno)))"))
            }
            return .success(.remote(address))
        }
    }
}

/// Why an accepted connection's peer could not be identified (it is closed).
struct PeerLookupFailure: Error, CustomStringConvertible {
    var description: String
}
