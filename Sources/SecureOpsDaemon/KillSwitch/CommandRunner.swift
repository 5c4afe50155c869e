import CSecureOpsSystem
import Dispatch
import Glibc
import SecureOpsSystem

/// Runs a program that was opened and checked beforehand: it is executed
/// from its descriptor (`/proc/self/fd/N`, what `fexecve` does), so the
/// file that runs is the file that was checked, whatever happens to its
/// path meanwhile. argv as given (no shell, no PATH lookup), a minimal
/// environment, stdin from /dev/null, and a deadline after which it gets
/// SIGTERM and, a second later, SIGKILL.
public enum CommandRunner {
    public enum Outcome: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)
        case timedOut
        case failedToStart(String)

        public var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signalled(let signal): "killed by signal \(signal)"
            case .timedOut: "timed out and was terminated"
            case .failedToStart(let why): "could not start: \(why)"
            }
        }
    }

    /// Runs `program` (an open descriptor of the checked file) with
    /// `arguments` as argv (argv[0] included) and waits for it, at most
    /// `timeoutSeconds`.
    public static func run(
        _ program: FileDescriptor, arguments: [String], environment: [String] = [], timeoutSeconds: Double
    ) -> Outcome {
        guard !arguments.isEmpty else { return .failedToStart("empty command") }
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        // dup2 onto itself clears close-on-exec in the child only: a script's
        // interpreter opens /proc/self/fd/N after the exec, so N must stay open.
        posix_spawn_file_actions_adddup2(&fileActions, program.raw, program.raw)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The daemon blocks SIGTERM/SIGINT/SIGHUP for its signal thread; the
        // child must start with them unblocked and at their defaults.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + environment
        let executable = "/proc/self/fd/\(program.raw)"
        var pid: pid_t = 0
        let rc = withCStrings(arguments) { cArgv in
            withCStrings(env) { cEnv in
                posix_spawn(&pid, executable, &fileActions, &attributes, cArgv, cEnv)
            }
        }
        guard rc == 0 else { return .failedToStart("\(arguments[0]): \(String(cString: strerror(rc)))") }
        return wait(for: pid, timeoutSeconds: timeoutSeconds)
    }

    /// Waits for `pid` without polling: a pidfd becomes readable when it
    /// exits. Past the deadline: SIGTERM, a second's grace, SIGKILL.
    private static func wait(for pid: pid_t, timeoutSeconds: Double) -> Outcome {
        let exitWatch = cs_pidfd_open(pid)
        defer { if exitWatch >= 0 { close(exitWatch) } }
        if let outcome = waitForExit(pid, exitWatch: exitWatch, seconds: timeoutSeconds) { return outcome }
        Glibc.kill(pid, SIGTERM)
        if waitForExit(pid, exitWatch: exitWatch, seconds: 1) != nil { return .timedOut }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return .timedOut
    }

    /// How `pid` ended, once it has (reaped), or nil after `seconds`.
    private static func waitForExit(_ pid: pid_t, exitWatch: Int32, seconds: Double) -> Outcome? {
        let deadline = SystemClock.monotonicNanoseconds() + UInt64(max(0, seconds) * 1e9)
        while true {
            if let outcome = reap(pid) { return outcome }
            let now = SystemClock.monotonicNanoseconds()
            if now >= deadline { return nil }
            if exitWatch >= 0 {
                let remainingMilliseconds = Int32(min(Double(Int32.max), Double(deadline - now) / 1e6 + 1))
                var poller = pollfd(fd: exitWatch, events: Int16(POLLIN), revents: 0)
                _ = poll(&poller, 1, remainingMilliseconds)
            } else {
                // No pidfd (Linux before 5.3): look every 10 ms.
                usleep(10_000)
            }
        }
    }

    private static func reap(_ pid: pid_t) -> Outcome? {
        var status: Int32 = 0
        while true {
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { break }
            if waited < 0 && errno == EINTR { continue }
            if waited < 0 { return .failedToStart("waitpid: \(String(cString: strerror(errno)))") }
            return nil
        }
        let signal = status & 0x7F
        if signal == 0 { return .exited((status >> 8) & 0xFF) }
        return .signalled(signal)
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return body(pointers)
    }
}
