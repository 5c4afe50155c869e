import CURing
import Glibc
import SecureOpsAuditLog
import SecureOpsEngine

/// The checks `audit` runs, in report order. Each looks at one thing on
/// this host, says what it found in a sentence, and with `fix` repairs what
/// is safe to repair (permissions only, never ownership or content).
enum AuditChecks {
    static let all: [AuditCheck] = [
        socketPermissions, socketDirectory, stateDirectory, auditLogFiles, auditLogChain, policyFile,
        descriptorLimit, ioUring, privileges, killSwitch, onKillCommand,
    ]

    static let socketPermissions = AuditCheck(
        id: "socket-permissions", title: "Control socket mode and owner", severity: .high, deepOnly: false
    ) { env in
        let path = env.options.socketPath
        guard let facts = FileFacts(path) else { throw AuditError("cannot stat \(path): \(String(cString: strerror(errno)))") }
        let wanted = mode_t(env.options.socketMode)
        let wantedText = "0" + String(wanted, radix: 8)
        if facts.uid != getuid() {
            return .fail("\(path) is owned by uid \(facts.uid), not the daemon's uid \(getuid()): another process may have replaced the socket")
        }
        if facts.mode != wanted {
            if env.fix, chmod(path, wanted) == 0 {
                return AuditOutcome(status: .pass, detail: "\(path) had mode \(facts.octal); reset to the configured \(wantedText)", fixed: true)
            }
            if facts.mode & 0o002 != 0 && wanted & 0o002 == 0 {
                return .fail("\(path) is world-writable (\(facts.octal)) but configured \(wantedText): any local user can connect; run 'chmod \(wantedText) \(path)' or audit --fix")
            }
            return .warn("\(path) has mode \(facts.octal), configured \(wantedText); audit --fix resets it")
        }
        if facts.mode & 0o002 != 0 {
            return .warn("\(path) is world-connectable by configuration (--socket-mode \(wantedText)): the policy is the only gate, so every local user is refused or limited by it")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.uid)")
    }

    static let socketDirectory = AuditCheck(
        id: "socket-directory", title: "Socket directory is private", severity: .high, deepOnly: false
    ) { env in
        let directory = parentDirectory(of: env.options.socketPath)
        guard let facts = FileFacts(directory) else { throw AuditError("cannot stat \(directory): \(String(cString: strerror(errno)))") }
        if facts.uid != getuid() && facts.uid != 0 {
            return .fail("\(directory) is owned by uid \(facts.uid): that user can replace the socket")
        }
        if facts.mode & 0o002 != 0 && facts.mode & 0o1000 == 0 {
            // Only our own directory is ours to repair.
            if env.fix, facts.uid == getuid(), chmod(directory, facts.mode & ~0o022) == 0 {
                return AuditOutcome(status: .pass, detail: "\(directory) was world-writable (\(facts.octal)); removed group/other write", fixed: true)
            }
            return .fail("\(directory) is world-writable without the sticky bit (\(facts.octal)): anyone can replace the socket")
        }
        if facts.mode & 0o002 != 0 {
            return .warn("\(directory) is a shared sticky directory (\(facts.octal)); a private directory (0750) is safer")
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

    /// The key, the log and its head: regular files of the daemon's user,
    /// mode 0600. A readable key lets anyone forge records.
    static let auditLogFiles = AuditCheck(
        id: "audit-log-files", title: "Audit log, key and head file permissions", severity: .critical, deepOnly: false
    ) { env in
        let log = env.services.trail.log
        var problems: [String] = []
        var repaired: [String] = []
        for path in [log.keyPath, log.logPath, log.headPath] {
            guard let facts = FileFacts(path) else {
                // The head appears with the first durable record; the others must exist.
                if path == log.headPath && errno == ENOENT { continue }
                problems.append("\(path) is missing (\(String(cString: strerror(errno))))")
                continue
            }
            if facts.isSymlink || !facts.isRegular {
                problems.append("\(path) is not a regular file")
                continue
            }
            if facts.uid != getuid() {
                problems.append("\(path) is owned by uid \(facts.uid), not the daemon's uid \(getuid())")
                continue
            }
            if facts.mode & 0o077 != 0 {
                if env.fix, chmod(path, 0o600) == 0 {
                    repaired.append("\(path) \(facts.octal) → 0600")
                } else {
                    let why = path == log.keyPath ? "others can read the key and forge records; rotate it after fixing" : "others can read or change it"
                    problems.append("\(path) has mode \(facts.octal): \(why); run 'chmod 0600 \(path)' or audit --fix")
                }
            }
        }
        if !problems.isEmpty { return .fail(problems.joined(separator: "; ")) }
        if !repaired.isEmpty {
            return AuditOutcome(status: .pass, detail: "reset to 0600: " + repaired.joined(separator: ", "), fixed: true)
        }
        return .pass("\(log.keyPath), \(log.logPath) and \(AuditLogFormat.headFileName) are 0600, owned by uid \(getuid())")
    }

    /// Writer health and the tail of the live log; `deep` verifies every
    /// record's MAC and link (reads the whole file).
    static let auditLogChain = AuditCheck(
        id: "audit-log-chain", title: "Audit log chain integrity", severity: .critical, deepOnly: false
    ) { env in
        let log = env.services.trail.log
        let health = log.health
        if !health.healthy {
            return .fail("writes are failing (\(health.lastError ?? "unknown error")); \(health.lost) record(s) lost since start")
        }
        if let problem = log.checkTail() { return .fail(problem) }
        var notes: [String] = []
        if health.lost > 0 { notes.append("\(health.lost) record(s) were lost since start (write failures or a full queue)") }
        let aside = movedAsideLogs(in: log.directory)
        if !aside.isEmpty {
            notes.append("damaged earlier log(s) kept aside: \(aside.joined(separator: ", ")); inspect with 'secureops verify-log --log FILE'")
        }
        var summary = "tail verifies, \(health.records) records written"
        if env.deep {
            let report = try log.verifyAll()
            if let problem = report.problem {
                return .fail("\(log.logPath) \(problem)")
            }
            summary = "all \(report.records) records verify (MACs, sequence, chain, head at seq \(report.headSeq.map(String.init) ?? "none"))"
        }
        if !notes.isEmpty { return .warn(summary + "; " + notes.joined(separator: "; ")) }
        return .pass(summary + (env.deep ? "" : "; audit --deep verifies the whole chain"))
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
            return .fail("\(path) is writable by group or others (\(facts.octal)); the next reload will refuse it; run 'chmod go-w \(path)' or audit --fix")
        }
        let directory = parentDirectory(of: path)
        if let problem = PolicyLoader.directoryProblem(directory, daemonUID: getuid()) {
            return .fail("\(path): \(problem)")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.uid), policy version \(env.services.policy.version)")
    }

    /// The descriptor limit against what the daemon promises: enough room
    /// for the connection cap, and a per-uid cap so one user cannot take it all.
    static let descriptorLimit = AuditCheck(
        id: "descriptor-limit", title: "RLIMIT_NOFILE against the connection caps", severity: .medium, deepOnly: false
    ) { env in
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let capacity = env.services.engine?.statistics.connectionCapacity ?? 0
        let policy = env.services.policy
        let perUid = policy.limits.maxConnectionsPerUid
        let base = "RLIMIT_NOFILE \(limit.rlim_cur) (hard \(limit.rlim_max)): room for \(capacity) connections"
        if limit.rlim_cur < 4096 {
            return .warn("\(base); raise it (LimitNOFILE= in the systemd unit, or ulimit -n) for more clients")
        }
        if !policy.grants.isEmpty {
            guard let perUid else {
                return .warn("\(base), and no limits.maxConnectionsPerUid: one granted user can take every slot; set a cap in \(policy.path ?? "the policy")")
            }
            if perUid >= capacity {
                return .warn("\(base); limits.maxConnectionsPerUid \(perUid) is not below it, so one user can still take every slot")
            }
        }
        return .pass("\(base); per-uid cap \(perUid.map(String.init) ?? "none (only root and the daemon's user may connect)")")
    }

    /// io_uring as this kernel offers it; `deep` also probes, on a
    /// throwaway ring, every operation the engine relies on.
    static let ioUring = AuditCheck(
        id: "io-uring", title: "io_uring availability and features on this kernel", severity: .medium, deepOnly: false
    ) { env in
        let disabled = readFirstLine("/proc/sys/kernel/io_uring_disabled") ?? "absent"
        let kernel = kernelRelease()
        guard let flags = env.services.engine?.ringDescription else {
            return .fail("the engine is not running on io_uring (kernel \(kernel), kernel.io_uring_disabled=\(disabled))")
        }
        var detail = "kernel \(kernel); ring set up with \(flags); kernel.io_uring_disabled=\(disabled)"
        if env.deep {
            let probe = probeOperations()
            if let failure = probe.failure { return .fail("\(detail); probing a second ring failed: \(failure)") }
            if !probe.missing.isEmpty {
                return .fail("\(detail); this kernel lacks \(probe.missing.joined(separator: ", ")), which the engine needs")
            }
            detail += "; probed: \(probe.supported.joined(separator: ", ")) supported"
        }
        if disabled == "1" {
            // 1: only members of kernel.io_uring_group may create rings; a
            // restart under another user would fail.
            return .warn("\(detail); io_uring is restricted to kernel.io_uring_group members: keep the daemon's user in that group")
        }
        if flags.contains("DEFER_TASKRUN") {
            return .pass(detail)
        }
        return .warn("\(detail) only: this kernel lacks SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1+), so completions cost more")
    }

    static let privileges = AuditCheck(
        id: "privileges", title: "Running without needless privilege", severity: .low, deepOnly: false
    ) { _ in
        let capabilities = readStatusField("CapEff") ?? "unknown"
        if geteuid() == 0 {
            return .warn("running as root (effective capabilities \(capabilities)); nothing the daemon does needs root when a dedicated user owns the socket directory and the state directory: run it as that user")
        }
        if capabilities != "unknown" && capabilities.contains(where: { $0 != "0" }) {
            return .warn("running as uid \(geteuid()) but with effective capabilities \(capabilities); drop them (CapabilityBoundingSet= in the unit)")
        }
        return .pass("running as uid \(geteuid()) with no effective capabilities")
    }

    static let killSwitch = AuditCheck(
        id: "kill-switch", title: "Kill switch state", severity: .critical, deepOnly: false
    ) { env in
        let state = env.services.killSwitch.current
        if state.killed {
            return .warn("tripped\(state.trippedAt.map { " at \($0)" } ?? "")\(state.uid.map { " by uid \($0)" } ?? ""): \(state.reason ?? "no reason given"); clear it with 'secureopsd reset-kill --state-dir \(env.options.stateDirectory)' while the daemon is stopped")
        }
        return .pass("not tripped")
    }

    /// What `kill` will run: present, executable, and changeable only by
    /// root or the daemon's user (the file and every directory above it).
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
        var info = stat()
        guard stat(program, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            return .fail("\(program) is not a regular file")
        }
        if info.st_uid != 0 && info.st_uid != getuid() {
            return .fail("\(program) is owned by uid \(info.st_uid): that user decides what kill runs")
        }
        if info.st_mode & 0o022 != 0 {
            return .fail("\(program) is writable by group or others (0\(String(info.st_mode & 0o7777, radix: 8))): anyone could change what kill runs")
        }
        var directory = parentDirectory(of: program)
        while true {
            if let facts = FileFacts(directory), facts.mode & 0o002 != 0 && facts.mode & 0o1000 == 0 {
                return .fail("\(directory) (above \(program)) is world-writable: anyone could replace what kill runs")
            }
            if directory == "/" { break }
            directory = parentDirectory(of: directory)
        }
        return .pass("\(program) is executable, owned by uid \(info.st_uid) (timeout \(command.timeoutSecs) s)")
    }

    // MARK: - Helpers

    static func readFirstLine(_ path: String) -> String? {
        guard let bytes = try? SecureFile.read(path, limit: 256) else { return nil }
        return String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
    }

    /// A field of /proc/self/status, e.g. `CapEff`.
    static func readStatusField(_ name: String) -> String? {
        guard let bytes = try? SecureFile.read("/proc/self/status", limit: 16 << 10) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + ":") {
            return line.dropFirst(name.count + 1).trimmingPrefix(while: { $0 == " " || $0 == "\t" }).description
        }
        return nil
    }

    static func kernelRelease() -> String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: &names.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Files `audit.log.broken-*` in the state directory.
    static func movedAsideLogs(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(AuditLogFormat.brokenPrefix) { names.append(name) }
        }
        return names.sorted()
    }

    /// Creates a small ring and asks the kernel which of the engine's
    /// operations it supports (IORING_REGISTER_PROBE).
    static func probeOperations() -> (supported: [String], missing: [String], failure: String?) {
        let operations: [(String, Int32)] = [
            ("ACCEPT", CU_OP_ACCEPT), ("RECV", CU_OP_RECV), ("SENDMSG", CU_OP_SENDMSG), ("READ", CU_OP_READ),
            ("ASYNC_CANCEL", CU_OP_ASYNC_CANCEL), ("PROVIDE_BUFFERS", CU_OP_PROVIDE_BUFFERS),
        ]
        var ring = io_uring()
        let rc = io_uring_queue_init(4, &ring, 0)
        guard rc == 0 else { return ([], [], String(cString: strerror(-rc))) }
        defer { io_uring_queue_exit(&ring) }
        var supported: [String] = []
        var missing: [String] = []
        for (name, op) in operations {
            let answer = cu_probe_op(&ring, op)
            if answer < 0 { return (supported, missing, "probe: \(String(cString: strerror(-answer)))") }
            if answer == 1 { supported.append(name) } else { missing.append(name) }
        }
        return (supported, missing, nil)
    }
}
