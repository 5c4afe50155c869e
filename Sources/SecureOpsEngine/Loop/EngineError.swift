import Glibc

/// Why the engine could not start or serve, in words that name the fix.
public enum EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    /// io_uring cannot be used on this kernel or in this sandbox; the text says
    /// which and what to do.
    case ioUringUnavailable(String)
    /// The socket path does not fit `sun_path` (107 bytes plus the NUL).
    case socketPathTooLong(path: String, bytes: Int)
    /// Another live server answers on the socket path.
    case socketInUse(path: String)
    /// The path exists and is not a socket; the engine will not replace it.
    case socketPathOccupied(path: String, what: String)
    /// The socket's directory could let another user replace the socket.
    case unsafeSocketDirectory(path: String, why: String)
    /// A system call failed while setting up the socket.
    case socketSetup(operation: String, path: String, errno: Int32)
    /// A TCP listen address that is not an IP literal.
    case invalidListenAddress(String)
    /// A system call failed while setting up a TCP listener.
    case listenerSetup(operation: String, address: String, errno: Int32)
    /// The engine was started twice, or used after shutdown.
    case invalidState(String)
    /// The engine has stopped: a publish went nowhere.
    case stopped

    public var description: String {
        switch self {
        case .ioUringUnavailable(let why):
            return why
        case .socketPathTooLong(let path, let bytes):
            return "socket path is \(bytes) bytes, more than the 107 a Unix socket address holds: \(path) (choose a shorter path)"
        case .socketInUse(let path):
            return "another server is already answering on \(path); stop it first or choose another path"
        case .socketPathOccupied(let path, let what):
            return "\(path) exists and is \(what), not a socket; refusing to replace it (remove it or choose another path)"
        case .unsafeSocketDirectory(let path, let why):
            return "refusing to create the socket in \(path): \(why); use a private directory (mode 0750, owned by this user)"
        case .socketSetup(let operation, let path, let code):
            return "\(operation) \(path): \(String(cString: strerror(code)))"
        case .invalidListenAddress(let why):
            return why
        case .listenerSetup(let operation, let address, let code):
            return "\(operation) \(address): \(String(cString: strerror(code)))"
        case .invalidState(let why):
            return why
        case .stopped:
            return "the engine has stopped; nothing was published"
        }
    }
}
