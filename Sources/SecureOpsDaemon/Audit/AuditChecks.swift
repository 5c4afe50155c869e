import Glibc
import SecureOpsEngine

/// The checks `audit` runs, in report order. Each looks at one thing on
/// this host, says what it found in a sentence, and with `fix` repairs what
/// is safe to repair (permissions only).
enum AuditChecks {
    static let all: [AuditCheck] = [
        socketPermissions, socketDirectory, stateDirectory, policyFile,
        descriptorLimit, ioUring, privileges, killSwitch, onKillCommand,
    ]

    static let socketPermissions = AuditCheck(
        id: "socket-permissions", title: "Control socket mode and owner", severity: .high, deepOnly: false
    ) { env in
        let path = env.options.socketPath
        guard let facts = FileFacts(path) else { throw AuditError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        let wanted = mode_t(env.options.socketMode)
        if facts.uid != getuid() {
            return .fail("\(path) is owned by uid \(facts.uid), not the daemon's uid \(getuid())")
        }
        if facts.mode & 0o002 != 0 {
            if env.fix, chmod(path, wanted) == 0 {
                return AuditOutcome(status: .pass, detail: "\(path) was world-writable (\(facts.octal)); reset to 0\(String(wanted, radix: 8))", fixed: true)
            }
            return .fail("\(path) is world-writable (\(facts.octal)): any local user can connect; run 'chmod 0\(String(wanted, radix: 8)) \(path)' or audit --fix")
        }
        if facts.mode != wanted {
            if env.fix, chmod(path, wanted) == 0 {
                return AuditOutcome(status: .pass, detail: "\(path) had mode \(facts.octal); reset to 0\(String(wanted, radix: 8))", fixed: true)
            }
            return .warn("\(path) has mode \(facts.octal), configured 0\(String(wanted, radix: 8))")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.uid)")
    }

    static let socketDirectory = AuditCheck(
        id: "socket-directory", title: "Socket directory is private", severity: .high, deepOnly: false
    ) { env in
        let directory = parentDirectory(of: env.options.socketPath)
        guard let facts = FileFacts(directory) else { throw AuditError("cannot stat \(directory): \(String(cString: strerror(errno)))") }
        if facts.mode & 0o002 != 0 && facts.mode & 0o1000 == 0 {
            return .fail("\(directory) is world-writable without the sticky bit (\(facts.octal)): anyone can replace the socket")
        }
        if facts.mode & 0o002 != 0 {
            return .warn("\(directory) is a shared sticky directory (\(facts.octal)); a private directory (0750) is safer")
        }
        if facts.uid != getuid() && facts.uid != 0 {
            return .fail("\(directory) is owned by uid \(facts.uid): that user can replace the socket")
        }
        return .pass("\(directory) mode \(facts.octal), owner uid \(facts.uid)")
    }

    static let stateDirectory = AuditCheck(
        id: "state-directory", title: "State directory is private", severity: .high, deepOnly: false
    ) { env in
        let path = env.options.stateDirectory
        guard let facts = FileFacts(path) else { throw AuditError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        if facts.isSymlink { return .fail("\(path) is a symbolic link; use a real directory") }
        if facts.uid != getuid() { return .fail("\(path) is owned by uid \(facts.uid), not the daemon's uid \(getuid())") }
        if facts.mode & 0o077 != 0 {
            if env.fix, chmod(path, 0o700) == 0 {
                return AuditOutcome(status: .pass, detail: "\(path) had mode \(facts.octal); reset to 0700", fixed: true)
            }
            return .fail("\(path) has mode \(facts.octal): others can read the kill state and audit log; run 'chmod 0700 \(path)' or audit --fix")
        }
        return .pass("\(path) mode \(facts.octal)")
    }

    static let policyFile = AuditCheck(
        id: "policy-file", title: "Policy file ownership and mode", severity: .high, deepOnly: false
    ) { env in
        guard let path = env.options.policyPath else {
            return .pass("no policy file: only root and the daemon's user (uid \(getuid())) may connect")
        }
        guard let facts = FileFacts(path) else { throw AuditError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        if facts.isSymlink { return .fail("\(path) is a symbolic link; the daemon refuses to load it") }
        if facts.uid != 0 && facts.uid != getuid() { return .fail("\(path) is owned by uid \(facts.uid); only root or the daemon's user may own it") }
        if facts.mode & 0o022 != 0 {
            if env.fix, chmod(path, facts.mode & ~0o022) == 0 {
                return AuditOutcome(status: .pass, detail: "\(path) was writable by group/others (\(facts.octal)); removed those bits", fixed: true)
            }
            return .fail("\(path) is writable by group or others (\(facts.octal)); run 'chmod go-w \(path)' or audit --fix")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.uid), policy version \(env.services.policy.version)")
    }

    static let descriptorLimit = AuditCheck(
        id: "descriptor-limit", title: "Descriptor limit against the connection cap", severity: .medium, deepOnly: false
    ) { env in
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let capacity = env.services.engine?.statistics.connectionCapacity ?? 0
        if limit.rlim_cur < 4096 {
            return .warn("RLIMIT_NOFILE is \(limit.rlim_cur): at most \(capacity) clients; raise it (LimitNOFILE= in the systemd unit, or ulimit -n)")
        }
        return .pass("RLIMIT_NOFILE \(limit.rlim_cur) (hard \(limit.rlim_max)): room for \(capacity) connections")
    }

    static let ioUring = AuditCheck(
        id: "io-uring", title: "io_uring features on this kernel", severity: .medium, deepOnly: false
    ) { env in
        let disabled = readFirstLine("/proc/sys/kernel/io_uring_disabled") ?? "absent"
        guard let flags = env.services.engine?.ringDescription else {
            return .fail("the engine is not running on io_uring (kernel.io_uring_disabled=\(disabled))")
        }
        if flags.contains("DEFER_TASKRUN") {
            return .pass("ring set up with \(flags); kernel.io_uring_disabled=\(disabled)")
        }
        return .warn("ring set up with \(flags) only: this kernel lacks SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+), so completions cost more")
    }

    static let privileges = AuditCheck(
        id: "privileges", title: "Running without needless privilege", severity: .low, deepOnly: false
    ) { _ in
        if geteuid() == 0 {
            return .warn("running as root; a dedicated user (with the socket directory and state directory owned by it) limits the damage of a compromise")
        }
        return .pass("running as uid \(geteuid())")
    }

    static let killSwitch = AuditCheck(
        id: "kill-switch", title: "Kill switch state", severity: .critical, deepOnly: false
    ) { env in
        let state = env.services.killSwitch.current
        if state.killed {
            return .warn("tripped\(state.trippedAt.map { " at \($0)" } ?? "")\(state.uid.map { " by uid \($0)" } ?? ""): \(state.reason ?? "no reason given"); clear it with 'secureopsd reset-kill' while the daemon is stopped")
        }
        return .pass("not tripped")
    }

    static let onKillCommand = AuditCheck(
        id: "onkill-command", title: "onKill command exists and is executable", severity: .high, deepOnly: false
    ) { env in
        guard let command = env.services.policy.onKill else {
            return .skipped("no onKill command configured")
        }
        let program = command.command[0]
        guard access(program, X_OK) == 0 else {
            return .fail("\(program) is not executable: \(String(cString: strerror(errno))); kill would not stop anything")
        }
        if let facts = FileFacts(program), facts.mode & 0o022 != 0 {
            return .fail("\(program) is writable by group or others (\(facts.octal)): anyone could change what kill runs")
        }
        return .pass("\(program) is executable (timeout \(command.timeoutSecs) s)")
    }

    static func readFirstLine(_ path: String) -> String? {
        guard let bytes = try? SecureFile.read(path, limit: 256) else { return nil }
        return String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
    }
}
