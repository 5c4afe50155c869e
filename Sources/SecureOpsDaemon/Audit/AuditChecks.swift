import Glibc
import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsSystem

/// The checks `audit` runs, in report order. Each looks at one thing on
/// this host, says what it found in a sentence, and with `fix` repairs what
/// is safe to repair (permissions only, never ownership or content).
enum AuditChecks {
    static let all: [AuditCheck] = [
        socketPermissions, socketDirectory, stateDirectory, auditLogFiles, auditLogChain, policyFile, policyGrants,
        descriptorLimit, ioBackend, privileges, killSwitch, onKillCommand,
    ]

    static let socketPermissions = AuditCheck(
        id: "socket-permissions", title: "Control socket mode and owner", severity: .high, deepOnly: false
    ) { env in
        let path = env.options.socketPath
        let socket = try AuditedPath.open(path, daemonUID: env.daemonUID)
        let wanted = mode_t(env.options.socketMode)
        let wantedText = "0" + String(wanted, radix: 8)
        let facts = socket.status
        if facts.kind != .socket {
            return .fail("\(path) is \(facts.kind), not a socket: something replaced the daemon's socket")
        }
        if facts.owner != env.daemonUID {
            return .fail("\(path) is owned by uid \(facts.owner), not the daemon's uid \(env.daemonUID): another process may have replaced the socket")
        }
        if facts.permissions != wanted {
            if env.fix, socket.setMode(wanted) {
                return AuditOutcome(status: .pass, detail: "\(path) had mode \(facts.octal); reset to the configured \(wantedText)", fixed: true)
            }
            if facts.permissions & 0o002 != 0 && wanted & 0o002 == 0 {
                return .fail("\(path) is world-writable (\(facts.octal)) but configured \(wantedText): any local user can connect; run 'chmod \(wantedText) \(path)' or audit --fix")
            }
            return .warn("\(path) has mode \(facts.octal), configured \(wantedText); audit --fix resets it")
        }
        if facts.permissions & 0o002 != 0 {
            return .warn("\(path) is world-connectable by configuration (--socket-mode \(wantedText)): the policy is the only gate, so every local user is refused or limited by it")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.owner)")
    }

    static let socketDirectory = AuditCheck(
        id: "socket-directory", title: "Socket directory is private", severity: .high, deepOnly: false
    ) { env in
        let path = parentDirectory(of: env.options.socketPath)
        let directory = try AuditedPath.open(path, daemonUID: env.daemonUID)
        let facts = directory.status
        if facts.owner != env.daemonUID && facts.owner != 0 {
            return .fail("\(path) is owned by uid \(facts.owner): that user can replace the socket")
        }
        if facts.isWritableByGroupOrOthers && !facts.isSticky {
            // Only our own directory is ours to repair.
            if env.fix, facts.owner == env.daemonUID, directory.setMode(facts.permissions & ~0o022) {
                return AuditOutcome(status: .pass, detail: "\(path) was writable by group or others (\(facts.octal)); removed group/other write", fixed: true)
            }
            return .fail("\(path) is writable by group or others without the sticky bit (\(facts.octal)): they can replace the socket")
        }
        if facts.isWritableByGroupOrOthers {
            return .warn("\(path) is a shared sticky directory (\(facts.octal)); a private directory (0750) is safer")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.owner)")
    }

    /// The directory the daemon holds open: still the one at the path,
    /// still ours and private.
    static let stateDirectory = AuditCheck(
        id: "state-directory", title: "State directory is private", severity: .high, deepOnly: false
    ) { env in
        let path = env.options.stateDirectory
        let held = env.services.trail.log.directory
        let named = try AuditedPath.open(path, daemonUID: env.daemonUID)
        let facts = try held.currentStatus()
        if !named.status.isSameFile(as: facts) {
            return .fail("\(path) is no longer the directory the daemon uses: it was renamed or replaced while the daemon runs")
        }
        if facts.owner != env.daemonUID { return .fail("\(path) is owned by uid \(facts.owner), not the daemon's uid \(env.daemonUID)") }
        if facts.permissions & 0o077 != 0 {
            if env.fix, (try? held.descriptor.setMode(0o700, path: path)) != nil {
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
        for name in [AuditLogFormat.keyFileName, AuditLogFormat.logFileName, AuditLogFormat.headFileName] {
            let path = log.directory.pathOf(name)
            let opened: (FileDescriptor, FileStatus)
            do throws(StateFileProblem) {
                opened = try StateFile.open(name, in: log.directory, flags: O_RDONLY, owner: env.daemonUID)
            } catch {
                // The head appears with the first durable record; the others must exist.
                if name == AuditLogFormat.headFileName && error.code == ENOENT { continue }
                problems.append(error.code == ENOENT ? "\(path) is missing" : "\(error)")
                continue
            }
            let (file, facts) = opened
            if facts.permissions & 0o077 != 0 {
                if env.fix, (try? file.setMode(0o600, path: path)) != nil {
                    repaired.append("\(path) \(facts.octal) → 0600")
                } else {
                    let why = name == AuditLogFormat.keyFileName ? "others can read the key and forge records; rotate it after fixing" : "others can read it"
                    problems.append("\(path) has mode \(facts.octal): \(why); run 'chmod 0600 \(path)' or audit --fix")
                }
            }
        }
        if !problems.isEmpty { return .fail(problems.joined(separator: "; ")) }
        if !repaired.isEmpty {
            return AuditOutcome(status: .pass, detail: "reset to 0600: " + repaired.joined(separator: ", "), fixed: true)
        }
        return .pass("\(log.keyPath), \(log.logPath) and \(AuditLogFormat.headFileName) are 0600, owned by uid \(env.daemonUID)")
    }

    /// Writer health and the tail of the live log; `deep` verifies every
    /// record's MAC and link (the whole file at most every five minutes,
    /// what was written since the last verification otherwise).
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
            let verification = try log.verifyChain()
            let report = verification.report
            if let problem = report.problem {
                return .fail("\(log.logPath) \(problem)")
            }
            let head = "head at seq \(report.headSeq.map(String.init) ?? "none")"
            if let resumed = verification.resumed {
                let minutes = Int(AuditLog.fullVerificationInterval.components.seconds / 60)
                summary = "the \(report.records - resumed.verifiedBefore) records from seq \(resumed.fromSeq) on verify (MACs, sequence, chain, \(head)) and follow the \(resumed.verifiedBefore) verified before, whose last record is unchanged; the whole file was verified at \(resumed.fullVerificationAt) (at most every \(minutes) minutes; 'secureops verify-log' checks it all)"
            } else {
                summary = "all \(report.records) records verify (MACs, sequence, chain, \(head))"
            }
        }
        if !notes.isEmpty { return .warn(summary + "; " + notes.joined(separator: "; ")) }
        return .pass(summary + (env.deep ? "" : "; audit --deep verifies the whole chain"))
    }

    static let policyFile = AuditCheck(
        id: "policy-file", title: "Policy file ownership and mode", severity: .high, deepOnly: false
    ) { env in
        guard let path = env.options.policyPath else {
            return .pass("no policy file: only root and the daemon's user (uid \(env.daemonUID)) may connect")
        }
        let file = try AuditedPath.open(path, daemonUID: env.daemonUID)
        let facts = file.status
        if facts.kind == .symbolicLink { return .fail("\(path) is a symbolic link; the daemon refuses to load it") }
        if facts.owner != 0 && facts.owner != env.daemonUID { return .fail("\(path) is owned by uid \(facts.owner); only root or the daemon's user may own it") }
        if facts.isWritableByGroupOrOthers {
            if env.fix, file.setMode(facts.permissions & ~0o022) {
                return AuditOutcome(status: .pass, detail: "\(path) was writable by group/others (\(facts.octal)); removed those bits", fixed: true)
            }
            return .fail("\(path) is writable by group or others (\(facts.octal)); the next reload will refuse it; run 'chmod go-w \(path)' or audit --fix")
        }
        return .pass("\(path) mode \(facts.octal), owner uid \(facts.owner), policy version \(env.services.policy.version)")
    }

    /// Grants to the overflow uid or gid (65534, "nobody"): in a user
    /// namespace every peer whose uid is not mapped shows up as that uid, so
    /// such a grant covers all of them; outside one, unrelated services
    /// share it.
    static let policyGrants = AuditCheck(
        id: "policy-grants", title: "No grants to the overflow uid or gid", severity: .high, deepOnly: false
    ) { env in
        let policy = env.services.policy
        let overflowUID = readFirstLine("/proc/sys/kernel/overflowuid").flatMap { UInt32($0) } ?? 65534
        let overflowGID = readFirstLine("/proc/sys/kernel/overflowgid").flatMap { UInt32($0) } ?? 65534
        let risky = policy.grants.filter { grant in
            switch grant.subject {
            case .uid(let uid): uid == overflowUID
            case .gid(let gid): gid == overflowGID
            }
        }
        guard !risky.isEmpty else {
            return .pass("\(policy.grants.count) grant(s), none to the overflow uid \(overflowUID) or gid \(overflowGID)")
        }
        let names = risky.map { "\($0.label) (\($0.allow))" }.joined(separator: ", ")
        let uidMap = readFirstLine("/proc/self/uid_map")?.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
        if let uidMap, uidMap != "0 0 4294967295" {
            return .fail("\(names): the daemon runs in a user namespace (uid_map \(uidMap)), where every peer whose uid is not mapped appears as uid \(overflowUID) / gid \(overflowGID), so this grant is theirs too; grant a mapped user or group instead")
        }
        return .warn("\(names): uid \(overflowUID) / gid \(overflowGID) is the overflow id, shared by unrelated services (and by every unmapped user if the daemon is ever run in a user namespace); grant a dedicated user or group")
    }

    /// The descriptor limit against what the daemon promises: enough room
    /// for the connection cap, slots no other user can take, and a per-uid
    /// cap below the unreserved capacity.
    static let descriptorLimit = AuditCheck(
        id: "descriptor-limit", title: "RLIMIT_NOFILE against the connection caps", severity: .medium, deepOnly: false
    ) { env in
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let capacity = env.services.engine?.statistics.connectionCapacity ?? 0
        let reserved = min(max(0, env.options.engine.reservedConnections), capacity / 2)
        let policy = env.services.policy
        let perUid = policy.limits.maxConnectionsPerUid
        let base = "RLIMIT_NOFILE \(limit.rlim_cur) (hard \(limit.rlim_max)): room for \(capacity) connections, \(reserved) of them kept for root and uid \(env.daemonUID)"
        if limit.rlim_cur < 4096 {
            return .warn("\(base); raise it (LimitNOFILE= in the systemd unit, or ulimit -n) for more clients")
        }
        if reserved == 0 {
            return .warn("\(base): with no reserved slots, other users can hold every slot and lock root out; keep --reserved-connections above 0")
        }
        if !policy.grants.isEmpty && perUid >= capacity - reserved {
            return .warn("\(base); limits.maxConnectionsPerUid \(perUid) is not below the \(capacity - reserved) unreserved slots, so one granted user can take all of them")
        }
        return .pass("\(base); per-uid cap \(perUid) for everyone else")
    }

    /// The backend serving and io_uring as this kernel offers it; `deep`
    /// also probes, on a throwaway ring, every operation the engine submits.
    /// epoll is sound but makes more system calls per delivery, so serving
    /// on it because io_uring is unavailable is a warning; asked for, a pass.
    static let ioBackend = AuditCheck(
        id: "io-backend", title: "IO backend, and io_uring on this kernel", severity: .medium, deepOnly: false
    ) { env in
        let disabled = readFirstLine("/proc/sys/kernel/io_uring_disabled") ?? "absent"
        let kernel = kernelRelease()
        guard let serving = env.services.engine?.servingBackend else {
            return .fail("the engine is not serving (kernel \(kernel), kernel.io_uring_disabled=\(disabled))")
        }
        var probed: String?
        if env.deep {
            switch IOUringProbe.run() {
            case .success(let outcome) where outcome.missing.isEmpty:
                probed = "probed: \(outcome.supported.joined(separator: ", ")) supported"
            case .success(let outcome):
                return .fail("kernel \(kernel); this kernel's io_uring lacks \(outcome.missing.joined(separator: ", ")), which the engine needs")
            case .failure(let error):
                probed = "probing io_uring: \(error)"
            }
        }
        guard let flags = serving.ringFlags else {
            let detail = "serving on epoll; kernel \(kernel); kernel.io_uring_disabled=\(disabled)" + (probed.map { "; \($0)" } ?? "")
            if let why = serving.ioUringUnavailable {
                return .warn("\(detail): io_uring was not available (\(why)); epoll serves every guarantee but makes more system calls per delivery")
            }
            return .pass("\(detail), as configured (--io-backend epoll)")
        }
        let detail = "serving on io_uring; kernel \(kernel); ring set up with \(flags); kernel.io_uring_disabled=\(disabled)" + (probed.map { "; \($0)" } ?? "")
        if disabled == "1" {
            // 1: only members of kernel.io_uring_group may create rings; a
            // restart under another user would fall back to epoll.
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

    /// What `kill` will run, checked exactly as the daemon checks it at
    /// load and before each run (`OnKillProgram`): the file and every
    /// directory above it changeable only by root or the daemon's user.
    static let onKillCommand = AuditCheck(
        id: "onkill-command", title: "onKill command exists and only root or the daemon's user can change it", severity: .high, deepOnly: false
    ) { env in
        guard let command = env.services.policy.onKill else {
            return .skipped("no onKill command configured")
        }
        let program = command.command[0]
        do {
            let checked = try OnKillProgram.open(program, daemonUID: env.daemonUID)
            return .pass("\(program) is executable, owned by uid \(checked.status.owner), and only root or the daemon's user can change it or the directories above it (timeout \(command.timeoutSecs) s)")
        } catch {
            return .fail("\(error): kill will refuse to run it")
        }
    }

    // MARK: - Helpers

    static func readFirstLine(_ path: String) -> String? {
        guard let bytes = FileDescriptor.readSmallFile(path, limit: 256) else { return nil }
        return String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
    }

    /// A field of /proc/self/status, e.g. `CapEff`.
    static func readStatusField(_ name: String) -> String? {
        guard let bytes = FileDescriptor.readSmallFile("/proc/self/status", limit: 16 << 10) else { return nil }
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
    static func movedAsideLogs(in directory: OpenedDirectory) -> [String] {
        directory.names().filter { $0.hasPrefix(AuditLogFormat.brokenPrefix) }.sorted()
    }
}
