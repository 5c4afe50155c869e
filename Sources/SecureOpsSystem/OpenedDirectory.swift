import Glibc

/// A directory held open by descriptor, and file operations relative to it
/// (`openat`, `renameat`, `unlinkat`, `fstatat`): once the directory has
/// been checked, the files in it are reached through the checked
/// descriptor, never by looking its path up again. Names are single path
/// components; symbolic links inside are never followed.
public final class OpenedDirectory: Sendable {
    public let descriptor: FileDescriptor
    /// The path it was opened by, for messages.
    public let path: String
    /// What `fstat` said when it was opened.
    public let status: FileStatus

    public init(descriptor: FileDescriptor, path: String, status: FileStatus) {
        precondition(status.kind == .directory, "not a directory")
        self.descriptor = descriptor
        self.path = path
        self.status = status
    }

    /// Opens a directory by path without following a symbolic link at its
    /// last component and without checking who owns the way there (for
    /// tools that read, like `verify-log`).
    public static func open(_ path: String) throws(SystemError) -> OpenedDirectory {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open", path) }
        let descriptor = FileDescriptor(adopting: fd)
        return OpenedDirectory(descriptor: descriptor, path: path, status: try descriptor.status(path: path))
    }

    /// `path/name`, for messages.
    public func pathOf(_ name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    /// Opens `name` with `flags` (`O_NOFOLLOW | O_CLOEXEC` added).
    public func openFile(_ name: String, flags: Int32, mode: mode_t = 0o600) throws(SystemError) -> FileDescriptor {
        precondition(!name.contains("/"), "a name inside the directory, not a path")
        let fd = openat(descriptor.raw, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SystemError("open", pathOf(name)) }
        return FileDescriptor(adopting: fd)
    }

    /// `fstatat` without following a link; nil when `name` does not exist.
    public func statusOf(_ name: String) throws(SystemError) -> FileStatus? {
        var info = stat()
        guard fstatat(descriptor.raw, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw SystemError("stat", pathOf(name))
        }
        return FileStatus(info)
    }

    public func exists(_ name: String) -> Bool {
        (try? statusOf(name)) != nil
    }

    /// The whole of a small file, at most `limit` bytes; nil when absent.
    public func readFile(_ name: String, limit: Int) throws(SystemError) -> [UInt8]? {
        let fd = openat(descriptor.raw, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw SystemError("open", pathOf(name))
        }
        let file = FileDescriptor(adopting: fd)
        guard let bytes = file.read(at: 0, count: limit) else { throw SystemError("read", pathOf(name)) }
        return bytes
    }

    /// Replaces `name` atomically and durably: a new file written and
    /// fsync'd beside it, renamed over it, then the directory fsync'd. A
    /// crash leaves the old or the new file, never a torn one.
    public func replaceAtomically(_ name: String, with bytes: [UInt8], mode: mode_t = 0o600) throws(SystemError) {
        let temporary = name + ".tmp"
        unlinkat(descriptor.raw, temporary, 0)
        let file = try openFile(temporary, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode)
        var failure: SystemError?
        if let code = file.writeAll(bytes) { failure = SystemError("write", pathOf(temporary), code: code) }
        if failure == nil, let code = file.sync() { failure = SystemError("fsync", pathOf(temporary), code: code) }
        file.close()
        if let failure {
            unlinkat(descriptor.raw, temporary, 0)
            throw failure
        }
        guard renameat(descriptor.raw, temporary, descriptor.raw, name) == 0 else {
            let error = SystemError("rename", pathOf(name))
            unlinkat(descriptor.raw, temporary, 0)
            throw error
        }
        sync()
    }

    public func rename(_ name: String, to newName: String) throws(SystemError) {
        guard renameat(descriptor.raw, name, descriptor.raw, newName) == 0 else { throw SystemError("rename", pathOf(name)) }
    }

    /// Removes a file; true when it existed.
    @discardableResult
    public func remove(_ name: String) throws(SystemError) -> Bool {
        if unlinkat(descriptor.raw, name, 0) == 0 { return true }
        if errno == ENOENT { return false }
        throw SystemError("unlink", pathOf(name))
    }

    /// fsync of the directory, so renames and removals in it are durable.
    public func sync() {
        _ = descriptor.sync()
    }

    /// The names of the entries (without `.` and `..`), read through the
    /// descriptor.
    public func names() -> [String] {
        let copy = dup(descriptor.raw)
        guard copy >= 0, let stream = fdopendir(copy) else {
            if copy >= 0 { Glibc.close(copy) }
            return []
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The directory's status now (it may have changed since it was opened).
    public func currentStatus() throws(SystemError) -> FileStatus {
        try descriptor.status(path: path)
    }
}
