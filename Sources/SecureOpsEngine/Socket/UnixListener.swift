import CURing // for the socket constants: in whole-module (release) builds Glibc alone leaves them unresolved here
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
///
/// The parent directory is opened once through `TrustedPath` (every
/// directory from `/` down owned by root or this process's user, none
/// writable by others unless sticky, no symbolic links; missing ones
/// created) and everything after goes through that descriptor: the stale
/// check, the unlink, the bind itself (to `/proc/self/fd/N/name`), the
/// check after bind and the unlink at exit. Nobody can swap the directory
/// between the check and the use.
package struct UnixListener {
    let fd: Int32
    let path: String
    private let directory: OpenedDirectory
    private let name: String
    private let socketStatus: FileStatus

    private static let umaskLock = Locked(())

    init(path: String, mode: mode_t, directoryMode: mode_t, backlog: Int32, logger: Logger) throws(EngineError) {
        let pathBytes = Array(path.utf8)
        guard pathBytes.count <= UnixSocketAddress.maximumPathBytes else {
            throw .socketPathTooLong(path: path, bytes: pathBytes.count)
        }
        guard !pathBytes.isEmpty, !pathBytes.contains(0),
              let slash = path.lastIndex(of: "/"), path.index(after: slash) != path.endIndex
        else {
            throw .socketSetup(operation: "invalid socket path (give DIRECTORY/NAME)", path: path, errno: EINVAL)
        }
        let parent = slash == path.startIndex ? "/" : String(path[..<slash])
        name = String(path[path.index(after: slash)...])
        directory = try UnixListener.openDirectory(parent, mode: directoryMode, logger: logger)
        try UnixListener.removeStaleSocket(name, in: directory, path: path, logger: logger)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .socketSetup(operation: "socket() for", path: path, errno: errno) }
        // Bound through the directory's descriptor, so it lands in the
        // directory that was checked, whatever happens to the path.
        let boundPath = Array("/proc/self/fd/\(directory.descriptor.raw)/\(name)".utf8)
        guard boundPath.count <= UnixSocketAddress.maximumPathBytes else {
            Glibc.close(fd)
            throw .socketPathTooLong(path: path, bytes: pathBytes.count)
        }
        var address = UnixSocketAddress.make(boundPath)
        // The socket gets its final mode at bind time through the umask,
        // instead of a chmod(path) afterwards: chmod follows symlinks. The
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
        let info: FileStatus?
        do {
            info = try directory.statusOf(name)
        } catch {
            Glibc.close(fd)
            throw .socketSetup(operation: "stat() after bind", path: path, errno: error.code)
        }
        guard let info, info.kind == .socket, info.owner == geteuid(), info.permissions & 0o777 == mode & 0o777 else {
            Glibc.close(fd)
            throw .socketPathOccupied(path: path, what: "replaced by something else right after bind (a race with another process?)")
        }
        guard listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            _ = try? directory.remove(name)
            throw .socketSetup(operation: "listen()", path: path, errno: code)
        }
        self.fd = fd
        self.path = path
        socketStatus = info
    }

    /// Closes the socket and removes it if the name still means our socket
    /// (another daemon may have replaced it after we stopped answering).
    func close(logger: Logger) {
        Glibc.close(fd)
        if let current = try? directory.statusOf(name), current.isSameFile(as: socketStatus) {
            _ = try? directory.remove(name)
        } else {
            logger.warning("socket path no longer names this engine's socket; leaving it", metadata: ["path": "\(path)"])
        }
    }

    /// The socket's directory, checked from `/` down and created (with
    /// `mode` for the last one, 0755 above it, through the umask) if
    /// missing. Someone else's directory (a squatted /tmp/secureops-$UID,
    /// say) would let them replace the socket; a shared sticky one is
    /// allowed with a warning.
    private static func openDirectory(_ path: String, mode: mode_t, logger: Logger) throws(EngineError) -> OpenedDirectory {
        let directory: OpenedDirectory
        do {
            directory = try TrustedPath.openDirectory(
                path, trust: .rootAnd(geteuid()), final: .traversable,
                creating: TrustedPath.Creation(intermediateMode: 0o755, finalMode: mode))
        } catch {
            throw .unsafeSocketDirectory(path: error.component, why: "it " + error.reason)
        }
        if directory.status.isWritableByGroupOrOthers {
            logger.warning("socket directory is shared (sticky, writable by others); a private directory is safer", metadata: ["path": "\(path)"])
        }
        return directory
    }

    /// A socket file left by a daemon that died is replaced; one that a live
    /// server answers on is not, nor anything that is not a socket.
    private static func removeStaleSocket(_ name: String, in directory: OpenedDirectory, path: String, logger: Logger) throws(EngineError) {
        let existing: FileStatus?
        do {
            existing = try directory.statusOf(name)
        } catch {
            throw .socketSetup(operation: "stat()", path: path, errno: error.code)
        }
        guard let existing else { return }
        guard existing.kind == .socket else {
            throw .socketPathOccupied(path: path, what: "\(existing.kind)")
        }
        if isAnswering(path: "/proc/self/fd/\(directory.descriptor.raw)/\(name)") {
            throw .socketInUse(path: path)
        }
        logger.info("replacing stale socket file (nothing answers on it)", metadata: ["path": "\(path)"])
        do {
            try directory.remove(name)
        } catch {
            throw .socketSetup(operation: "unlink() stale socket", path: path, errno: error.code)
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
    package static func isAnswering(path: String) -> Bool {
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
