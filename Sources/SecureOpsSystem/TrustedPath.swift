import CSecureOpsSystem
import Glibc

/// The uids a path may pass through: whoever owns a directory on the way
/// can rename what lies beneath it, so everything from `/` to the file must
/// belong to one of them (root and the running user, as a rule).
public struct PathTrust: Sendable, Equatable {
    public var owners: Set<UInt32>

    public init(owners: Set<UInt32>) {
        self.owners = owners
    }

    /// Root and `uid`.
    public static func rootAnd(_ uid: UInt32) -> PathTrust {
        PathTrust(owners: [0, uid])
    }

    var ownerList: String {
        owners.sorted().map { $0 == 0 ? "root" : "uid \($0)" }.joined(separator: " or ")
    }
}

/// Why a path cannot be trusted (or opened), naming the component at fault
/// and what would fix it.
public struct PathProblem: Error, CustomStringConvertible, Sendable, Equatable {
    /// The path that was asked for.
    public var path: String
    /// The prefix of `path` at fault.
    public var component: String
    public var reason: String
    /// The errno when a system call failed (ENOENT: it does not exist).
    public var code: Int32?

    public var description: String {
        component == path ? "\(path) \(reason)" : "\(path): \(component) \(reason)"
    }
}

/// Opens a path one component at a time from `/`, never following a
/// symbolic link, and checks each component on the descriptor it opened
/// (`openat` + `fstat`), so nothing can be swapped between the check and
/// the use. The rule at every step:
///
/// - no component is a symbolic link (the message names the real path);
/// - every directory on the way is owned by a trusted uid and not writable
///   by group or others, unless it is sticky (like `/tmp`), where others
///   may add entries but not replace ours, and the next component must
///   then be ours, as every component must;
/// - the last component is owned by a trusted uid and, unless
///   `FinalRule.traversable`, not writable by group or others at all.
///
/// The same rule OpenSSH applies to keys and `authorized_keys`, with the
/// sticky exception for `/tmp`-based paths.
public enum TrustedPath {
    /// How strictly the last component is held.
    public enum FinalRule: Sendable {
        /// Not writable by group or others (a file to trust, a private directory).
        case `private`
        /// Like a directory on the way: writable by others only if sticky.
        case traversable
    }

    /// Missing directories to create on the way.
    public struct Creation: Sendable {
        /// Mode for directories created above the last one (through the umask).
        public var intermediateMode: mode_t
        /// Mode for the last one when it is created (through the umask; the
        /// caller sets the exact mode on the returned descriptor).
        public var finalMode: mode_t

        public init(intermediateMode: mode_t = 0o755, finalMode: mode_t) {
            self.intermediateMode = intermediateMode
            self.finalMode = finalMode
        }
    }

    /// Opens `path` (relative paths start at the working directory) with
    /// `flags` for the last component (`O_NOFOLLOW | O_CLOEXEC` are always
    /// added), after checking every component. Returns the descriptor and
    /// what `fstat` said about it.
    public static func open(
        _ path: String, trust: PathTrust, flags: Int32, final rule: FinalRule = .private, creating creation: Creation? = nil
    ) throws(PathProblem) -> (descriptor: FileDescriptor, status: FileStatus) {
        let absolute = try absolutePath(path)
        let components = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
        if components.contains("..") {
            throw PathProblem(path: path, component: path, reason: "contains \"..\"; give the path without it")
        }
        var walked = ""
        let rootFD = Glibc.open("/", CS_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw PathProblem(path: path, component: "/", reason: "cannot be opened: \(String(cString: strerror(errno)))", code: errno) }
        var current = FileDescriptor(adopting: rootFD)
        var currentStatus = try status(of: current, path: path, component: "/")
        if components.isEmpty {
            try check(currentStatus, path: path, component: "/", trust: trust, rule: rule, isLast: true)
            let reopened = Glibc.open("/", flags | O_CLOEXEC)
            guard reopened >= 0 else { throw PathProblem(path: path, component: "/", reason: "cannot be opened: \(String(cString: strerror(errno)))", code: errno) }
            return (FileDescriptor(adopting: reopened), currentStatus)
        }
        try check(currentStatus, path: path, component: "/", trust: trust, rule: .traversable, isLast: false)
        for (index, name) in components.enumerated() {
            let isLast = index == components.count - 1
            walked += "/" + name
            var openFlags = isLast ? flags : (CS_O_PATH | O_DIRECTORY)
            openFlags |= O_NOFOLLOW | O_CLOEXEC
            if isLast && flags & CS_O_PATH == 0 && flags & O_DIRECTORY == 0 {
                // A FIFO put where a file was expected must not block the caller.
                openFlags |= O_NONBLOCK
            }
            var fd = openat(current.raw, name, openFlags)
            if fd < 0 && errno == ENOENT, let creation {
                let mode = isLast ? creation.finalMode : creation.intermediateMode
                if mkdirat(current.raw, name, mode) != 0 && errno != EEXIST {
                    throw PathProblem(path: path, component: walked, reason: "cannot be created: \(String(cString: strerror(errno)))", code: errno)
                }
                fd = openat(current.raw, name, openFlags)
            }
            guard fd >= 0 else {
                let code = errno
                if code == ELOOP || code == ENOTDIR {
                    // O_NOFOLLOW meets a link as ELOOP, O_DIRECTORY as ENOTDIR.
                    var info = stat()
                    if fstatat(current.raw, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
                        let found = FileStatus(info)
                        if found.kind == .symbolicLink {
                            throw PathProblem(path: path, component: walked, reason: symbolicLinkReason(parent: current, name: name, walked: walked), code: ELOOP)
                        }
                        throw PathProblem(path: path, component: walked, reason: "is \(found.kind), not a directory", code: code)
                    }
                }
                let why = code == ENOENT ? "does not exist" : "cannot be opened: \(String(cString: strerror(code)))"
                throw PathProblem(path: path, component: walked, reason: why, code: code)
            }
            let next = FileDescriptor(adopting: fd)
            let nextStatus = try status(of: next, path: path, component: walked)
            if nextStatus.kind == .symbolicLink {
                throw PathProblem(path: path, component: walked, reason: symbolicLinkReason(parent: current, name: name, walked: walked), code: ELOOP)
            }
            try check(nextStatus, path: path, component: walked, trust: trust, rule: rule, isLast: isLast)
            current = next
            currentStatus = nextStatus
        }
        return (current, currentStatus)
    }

    /// Opens a directory through `open` and wraps it for work inside it.
    public static func openDirectory(
        _ path: String, trust: PathTrust, final rule: FinalRule = .private, creating creation: Creation? = nil
    ) throws(PathProblem) -> OpenedDirectory {
        let (descriptor, status) = try open(path, trust: trust, flags: O_RDONLY | O_DIRECTORY, final: rule, creating: creation)
        return OpenedDirectory(descriptor: descriptor, path: path, status: status)
    }

    private static func check(
        _ status: FileStatus, path: String, component: String, trust: PathTrust, rule: FinalRule, isLast: Bool
    ) throws(PathProblem) {
        if !isLast && status.kind != .directory {
            throw PathProblem(path: path, component: component, reason: "is not a directory")
        }
        guard trust.owners.contains(status.owner) else {
            let what = isLast ? "could change it" : "could replace what lies beneath it"
            throw PathProblem(
                path: path, component: component,
                reason: "is owned by uid \(status.owner), who \(what); it must be owned by \(trust.ownerList)")
        }
        guard status.isWritableByGroupOrOthers else { return }
        let sharedAllowed = status.kind == .directory && status.isSticky && (!isLast || rule == .traversable)
        if !sharedAllowed {
            let fix = "run 'chmod go-w \(component)'"
            throw PathProblem(
                path: path, component: component,
                reason: "is writable by group or others (mode \(status.octal)), who \(isLast ? "could change it" : "could replace what lies beneath it"); \(fix)")
        }
    }

    private static func status(of descriptor: FileDescriptor, path: String, component: String) throws(PathProblem) -> FileStatus {
        do {
            return try descriptor.status(path: component)
        } catch {
            throw PathProblem(path: path, component: component, reason: "cannot be examined: \(String(cString: strerror(error.code)))", code: error.code)
        }
    }

    private static func symbolicLinkReason(parent: FileDescriptor, name: String, walked: String) -> String {
        var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlinkat(parent.raw, name, &target, target.count - 1)
        guard length > 0 else { return "is a symbolic link; give the real path" }
        let text = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parent = walked[..<(walked.lastIndex(of: "/") ?? walked.startIndex)]
        let resolved = text.hasPrefix("/") ? text : (parent.isEmpty ? "" : String(parent)) + "/" + text
        return "is a symbolic link to \(resolved); give the real path instead"
    }

    private static func absolutePath(_ path: String) throws(PathProblem) -> String {
        guard !path.isEmpty else { throw PathProblem(path: path, component: path, reason: "is empty") }
        guard !path.utf8.contains(0) else { throw PathProblem(path: path, component: path, reason: "contains a NUL byte") }
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else {
            throw PathProblem(path: path, component: path, reason: "is relative and the working directory is unknown: \(String(cString: strerror(errno)))", code: errno)
        }
        let cwd = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return cwd + "/" + path
    }
}
