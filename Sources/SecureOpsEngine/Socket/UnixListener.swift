import Glibc
import Logging
import SecureOpsSystem
import Synchronization

/// The listening Unix-domain socket: created safely, removed only if ours.
///
/// Follows what trusted control sockets do (ssh-agent, dockerd, systemd):
/// a private parent directory, a stale socket replaced only after nothing
/// answers on it, the mode fixed at `bind` (before `listen`, so no client
/// can connect through a wider mode), and on exit an unlink only if the
/// path still names the socket this process created.
struct UnixListener {
    let fd: Int32
    let path: String
    private let device: UInt64
    private let inode: UInt64

    private static let umaskLock = Locked(())

    init(path: String, mode: mode_t, directoryMode: mode_t, backlog: Int32, logger: Logger) throws(EngineError) {
        let pathBytes = Array(path.utf8)
        guard pathBytes.count <= UnixSocketAddress.maximumPathBytes else {
            throw .socketPathTooLong(path: path, bytes: pathBytes.count)
        }
        guard !pathBytes.isEmpty, !pathBytes.contains(0) else {
            throw .socketSetup(operation: "invalid socket path", path: path, errno: EINVAL)
        }
        try UnixListener.ensureParentDirectory(of: path, mode: directoryMode, logger: logger)
        try UnixListener.removeStaleSocket(at: path, logger: logger)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .socketSetup(operation: "socket() for", path: path, errno: errno) }
        var address = UnixSocketAddress.make(pathBytes)
        // The socket gets its final mode at bind time through the umask,
        // instead of a chmod(path) afterwards: chmod follows symlinks, so in
        // a directory others can write, a path swapped for a symlink between
        // bind and chmod would hand the mode to the symlink's target. The
        // umask is per process: the lock keeps engines starting at the same
        // time in one process from restoring each other's temporary mask.
        let (bound, bindErrno) = UnixListener.umaskLock.withLock { _ in
            let oldMask = umask(~mode & 0o777)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            let bindErrno = errno
            umask(oldMask)
            return (bound, bindErrno)
        }
        guard bound == 0 else {
            Glibc.close(fd)
            if bindErrno == EADDRINUSE { throw .socketInUse(path: path) }
            throw .socketSetup(operation: "bind()", path: path, errno: bindErrno)
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .socketSetup(operation: "lstat()", path: path, errno: code)
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK, info.st_uid == geteuid(), info.st_mode & 0o777 == mode & 0o777 else {
            Glibc.close(fd)
            throw .socketPathOccupied(path: path, what: "replaced by something else right after bind (a race with another process?)")
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            unlink(path)
            throw .socketSetup(operation: "listen()", path: path, errno: code)
        }
        self.fd = fd
        self.path = path
        self.device = UInt64(info.st_dev)
        self.inode = UInt64(info.st_ino)
    }

    /// Closes the socket and unlinks the path if it still names our socket
    /// (another daemon may have replaced it after we stopped answering).
    func close(logger: Logger) {
        Glibc.close(fd)
        var info = stat()
        if lstat(path, &info) == 0, UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode {
            unlink(path)
        } else {
            logger.warning("socket path no longer names this daemon's socket; leaving it", metadata: ["path": "\(path)"])
        }
    }

    /// Creates missing parent directories; the last one gets `mode`.
    /// An existing directory is left as it is (the operator chose it), but
    /// it must be a directory, not a symlink to one.
    private static func ensureParentDirectory(of path: String, mode: mode_t, logger: Logger) throws(EngineError) {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")), slash != path.utf8.startIndex else { return }
        let parent = String(path[..<slash])
        var info = stat()
        if lstat(parent, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw .socketPathOccupied(path: parent, what: (info.st_mode & S_IFMT) == S_IFLNK ? "a symbolic link" : "not a directory")
            }
            // Someone else's directory (a squatted /tmp/secureops-$UID, say)
            // would let them replace the socket under us.
            if info.st_uid != geteuid() && info.st_uid != 0 {
                throw .unsafeSocketDirectory(path: parent, why: "it is owned by uid \(info.st_uid), not by this process (uid \(geteuid())) or root")
            }
            if info.st_mode & 0o022 != 0 {
                if info.st_mode & S_ISVTX == 0 {
                    throw .unsafeSocketDirectory(path: parent, why: "others may write to it (mode 0\(String(info.st_mode & 0o7777, radix: 8))) and could replace the socket")
                }
                logger.warning("socket directory is shared (sticky, writable by others); a private directory is safer", metadata: ["path": "\(parent)"])
            }
            return
        }
        try ensureParentDirectory(of: parent, mode: 0o755, logger: logger)
        // The mode comes from the umask at creation (no chmod by path, which
        // would follow a symlink swapped in by someone else).
        let (made, code) = umaskLock.withLock { _ in
            let oldMask = umask(~mode & 0o777)
            let made = mkdir(parent, mode)
            let code = errno
            umask(oldMask)
            return (made, code)
        }
        if made != 0 && code != EEXIST {
            throw .socketSetup(operation: "mkdir()", path: parent, errno: code)
        }
        guard lstat(parent, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw .socketPathOccupied(path: parent, what: "not a directory after mkdir (a race with another process?)")
        }
        logger.debug("created socket directory", metadata: ["path": "\(parent)"])
    }

    /// A socket file left by a daemon that died is replaced; one that a live
    /// server answers on is not.
    private static func removeStaleSocket(at path: String, logger: Logger) throws(EngineError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            let kind: String
            switch info.st_mode & S_IFMT {
            case S_IFLNK: kind = "a symbolic link"
            case S_IFDIR: kind = "a directory"
            case S_IFREG: kind = "a regular file"
            default: kind = "another kind of file"
            }
            throw .socketPathOccupied(path: path, what: kind)
        }
        if isAnswering(path: path) {
            throw .socketInUse(path: path)
        }
        logger.info("replacing stale socket file (nothing answers on it)", metadata: ["path": "\(path)"])
        if unlink(path) != 0 && errno != ENOENT {
            throw .socketSetup(operation: "unlink() stale socket", path: path, errno: errno)
        }
    }

    /// Whether a live process listens on `path` right now.
    ///
    /// A successful connect() is not proof: after a daemon is killed, the
    /// kernel's asynchronous io_uring teardown can keep its listening socket
    /// (held by an armed accept) open for a moment, accepting into a backlog
    /// nobody will ever serve. The listener's creator is known from
    /// SO_PEERCRED on the connected socket; if that process is gone, the
    /// socket is stale.
    static func isAnswering(path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        let rc = UnixSocketAddress.connect(fd, to: Array(path.utf8))
        // EAGAIN: the listener exists but its backlog is full; it is alive.
        guard rc == 0 || errno == EAGAIN else { return false }
        guard rc == 0 else { return true }
        guard case .success(let listener) = PeerCred.of(socket: fd), listener.pid > 0 else { return true }
        return kill(listener.pid, 0) == 0 || errno == EPERM
    }
}
