import Dispatch
import Glibc
import Logging
import SecureOpsAuditLog
import SecureOpsEngine

/// Runs a configured command: argv as given (no shell, no PATH lookup), a
/// minimal environment, stdin from /dev/null, and a deadline after which it
/// gets SIGTERM and, a second later, SIGKILL.
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

    public static func run(_ argv: [String], environment: [String] = [], timeoutSeconds: Double) -> Outcome {
        guard let program = argv.first else { return .failedToStart("empty command") }
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
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
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in
                posix_spawn(&pid, program, &fileActions, &attributes, cArgv, cEnv)
            }
        }
        guard rc == 0 else { return .failedToStart("\(program): \(String(cString: strerror(rc)))") }

        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutSeconds * 1e9)
        var status: Int32 = 0
        while true {
            let waited = waitpid(pid, &status, WNOHANG)
            if waited == pid { return decode(status) }
            if waited < 0 && errno != EINTR { return .failedToStart("waitpid: \(String(cString: strerror(errno)))") }
            if DispatchTime.now().uptimeNanoseconds >= deadline { break }
            usleep(5_000)
        }
        Glibc.kill(pid, SIGTERM)
        let hardDeadline = DispatchTime.now().uptimeNanoseconds + 1_000_000_000
        while DispatchTime.now().uptimeNanoseconds < hardDeadline {
            if waitpid(pid, &status, WNOHANG) == pid { return .timedOut }
            usleep(5_000)
        }
        Glibc.kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        return .timedOut
    }

    private static func decode(_ status: Int32) -> Outcome {
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

extension DaemonServices {
    /// Starts the policy's `onKill` command on the Dispatch pool, then logs
    /// and records how it ended. Does not delay the reply to `kill`.
    func runOnKillCommand(reason: String?, peer: PeerCred) {
        guard let command = policy.onKill else { return }
        let logger = self.logger
        let trail = self.trail
        logger.notice("running onKill command", metadata: ["command": "\(command.command)", "timeoutSecs": "\(command.timeoutSecs)"])
        DispatchQueue.global().async {
            let environment = [
                "SECUREOPS_KILL_REASON=\(AuditText.clip(reason ?? ""))",
                "SECUREOPS_KILL_UID=\(peer.uid)",
                "SECUREOPS_KILL_PID=\(peer.pid)",
            ]
            let started = DaemonServices.monotonicNanoseconds()
            let outcome = CommandRunner.run(command.command, environment: environment, timeoutSeconds: command.timeoutSecs)
            let milliseconds = Int((DaemonServices.monotonicNanoseconds() - started) / 1_000_000)
            let metadata: Logger.Metadata = ["command": "\(command.command)", "outcome": "\(outcome)", "durationMs": "\(milliseconds)"]
            switch outcome {
            case .exited(0):
                logger.notice("onKill command finished", metadata: metadata)
            default:
                logger.error("onKill command failed", metadata: metadata)
            }
            trail.onKillFinished(command: command.command, outcome: outcome, milliseconds: milliseconds, timeoutSecs: command.timeoutSecs)
        }
    }
}
