import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The audit checks against real files, sockets and kernel state: what
/// each reports, `deep`, `fix`, and a check that throws.
@Suite("Control plane: audit checks", .timeLimit(.minutes(2)))
struct ControlPlaneAuditTests {
    static let checkIDs = [
        "socket-permissions", "socket-directory", "state-directory", "audit-log-files", "audit-log-chain", "policy-file",
        "policy-grants", "descriptor-limit", "io-backend", "privileges", "kill-switch", "onkill-command",
    ]

    func check(_ report: AuditReport, _ id: String) throws -> AuditCheckResult {
        try #require(report.checks.first { $0.id == id }, "no check \(id) in \(report.checks.map(\.id))")
    }

    @Test func everyCheckRunsAndTheDeepRunVerifiesTheWholeChainAndProbesIoUring() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        let quick = try connection.audit()
        #expect(quick.checks.map(\.id) == Self.checkIDs)
        #expect(quick.deep == false)
        #expect(try check(quick, "audit-log-chain").detail.contains("tail verifies"))
        #expect(try check(quick, "state-directory").status == .pass)
        #expect(try check(quick, "audit-log-files").status == .pass)
        #expect(try check(quick, "kill-switch").status == .pass)
        #expect(try check(quick, "onkill-command").status == .skipped)

        let deep = try connection.audit(AuditOptions(deep: true))
        #expect(deep.deep)
        let chain = try check(deep, "audit-log-chain")
        #expect(chain.status == .pass)
        #expect(chain.detail.contains("records verify (MACs, sequence, chain, head at seq"), "got \(chain.detail)")
        let backend = try check(deep, "io-backend")
        #expect(backend.detail.contains("probed: ACCEPT, RECV, SEND, SENDMSG, READ, POLL_ADD, ASYNC_CANCEL, WRITE, FSYNC supported"), "got \(backend.detail)")
        #expect(backend.detail.contains("kernel "))
        if DaemonProcess.backendUnderTest == "epoll" {
            #expect(backend.status == .pass && backend.detail.hasPrefix("serving on epoll;") && backend.detail.hasSuffix("as configured (--io-backend epoll)"), "got \(backend.detail)")
        } else {
            #expect(backend.detail.hasPrefix("serving on io_uring; kernel "), "got \(backend.detail)")
        }
    }

    @Test func theDeepRunCatchesAnEditInTheMiddleOfTheLiveLogThatTheTailCheckCannotSee() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        _ = try connection.kill(reason: "aaaa")
        _ = try connection.reloadPolicy()
        // Same size, same file: overwrite one byte of the kill reason in place.
        let log = daemon.stateDirectory + "/audit.log"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: log))
        let offset = try #require(bytes.range(of: Data("aaaa".utf8))).lowerBound
        let fd = open(log, O_WRONLY)
        #expect(pwrite(fd, "b", 1, off_t(offset)) == 1)
        close(fd)

        #expect(try check(try connection.audit(), "audit-log-chain").status == .pass)
        let deep = try check(try connection.audit(AuditOptions(deep: true)), "audit-log-chain")
        #expect(deep.status == .fail)
        #expect(deep.detail.contains("line 2 (seq 2): MAC mismatch"), "got \(deep.detail)")
    }

    @Test func theTailCheckNoticesALogReplacedBehindTheDaemonsBack() throws {
        let daemon = try DaemonProcess()
        let log = daemon.stateDirectory + "/audit.log"
        try FileManager.default.moveItem(atPath: log, toPath: log + ".old")
        try FileManager.default.copyItem(atPath: log + ".old", toPath: log)
        let chain = try check(try daemon.connect().audit(), "audit-log-chain")
        #expect(chain.status == .fail)
        #expect(chain.detail.contains("is not the file the daemon writes to: it was replaced"), "got \(chain.detail)")
    }

    @Test func fixRepairsAWorldWritableSocketAndAnOpenStateDirectoryAndSaysSo() throws {
        let daemon = try DaemonProcess()
        chmod(daemon.socketPath, 0o666)
        chmod(daemon.stateDirectory, 0o755)
        let connection = try daemon.connect()
        let before = try connection.audit()
        #expect(try check(before, "socket-permissions").status == .fail)
        #expect(try check(before, "socket-permissions").detail.contains("is world-writable (0666) but configured 0660"))
        #expect(try check(before, "state-directory").status == .fail)
        #expect(before.summary.fail == 2)

        let (status, table) = try run(DaemonProcess.cliPath, ["audit", "--fix", "--socket", daemon.socketPath])
        #expect(status == 0, "\(table)")
        #expect(table.contains("PASS (fixed)  high      socket-permissions"), "got \(table)")
        #expect(table.contains("had mode 0666; reset to the configured 0660"))
        #expect(table.contains("had mode 0755; reset to 0700"))
        #expect(table.contains("12 checks in "))
        #expect(fileMode(daemon.socketPath) == 0o660)
        #expect(fileMode(daemon.stateDirectory) == 0o700)

        let after = try connection.audit()
        #expect(after.checks.allSatisfy { !$0.fixed })
        #expect(after.summary.fail == 0)
        let runs = try auditFields(daemon.stateDirectory, event: "audit-run")
        #expect(runs.contains { $0["fixed"] == .array([.string("socket-permissions"), .string("state-directory")]) })
    }

    @Test func aCheckThatThrowsBecomesErrorAndTheRestStillRun() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        unlink(daemon.socketPath) // the listener lives on; the path is gone
        let report = try connection.audit()
        let socket = try check(report, "socket-permissions")
        #expect(socket.status == .error)
        #expect(socket.detail == "check failed to run: cannot stat \(daemon.socketPath): No such file or directory")
        #expect(report.checks.count == Self.checkIDs.count)
        #expect(report.summary.error == 1)
    }

    @Test func theOnKillCheckFailsForACommandOthersCanChange() throws {
        let directory = try makeTemporaryDirectory("secureops-test")
        let bin = directory + "/bin"
        mkdir(bin, 0o755)
        let program = try writeStopAgent(in: bin)
        let daemon = try DaemonProcess(
            policy: #"{"version": 2, "grants": [], "onKill": {"command": ["\#(program)"], "timeoutSecs": 5}}"#, directory: directory)
        let connection = try daemon.connect()
        let tight = try check(try connection.audit(), "onkill-command")
        #expect(tight.status == .pass, "\(tight.detail)")

        chmod(program, 0o777)
        let open = try check(try connection.audit(), "onkill-command")
        #expect(open.status == .fail)
        #expect(open.detail == "\(program) is writable by group or others (mode 0777), who could change it; run 'chmod go-w \(program)': kill will refuse to run it", "got \(open.detail)")
        chmod(program, 0o755)
        // A directory above it that another user owns: they could swap it.
        chown(bin, 65534, 65534)
        let swappable = try check(try connection.audit(), "onkill-command")
        #expect(swappable.status == .fail)
        #expect(swappable.detail.contains("\(program): \(bin) is owned by uid 65534, who could replace what lies beneath it"), "got \(swappable.detail)")
        chown(bin, 0, 0)
        unlink(program)
        let missing = try check(try connection.audit(), "onkill-command")
        #expect(missing.status == .fail)
        #expect(missing.detail.contains("\(program) does not exist: kill will refuse to run it"), "got \(missing.detail)")
    }

    @Test func theDescriptorCheckWarnsWhenOneGrantedUserCouldTakeEveryUnreservedSlot() throws {
        let wide = try DaemonProcess(
            policy: #"{"version": 2, "grants": [{"uid": 65534, "allow": ["ping"]}], "limits": {"maxConnectionsPerUid": 1000000}}"#)
        let warned = try check(try wide.connect().audit(), "descriptor-limit")
        #expect(warned.status == .warn)
        #expect(warned.detail.contains("limits.maxConnectionsPerUid 1000000 is not below the"), "got \(warned.detail)")
        // The default cap and the reserved slots pass.
        let defaults = try DaemonProcess(policy: #"{"version": 2, "grants": [{"uid": 65534, "allow": ["ping"]}]}"#)
        let passed = try check(try defaults.connect().audit(), "descriptor-limit")
        #expect(passed.status == .pass, "\(passed.detail)")
        #expect(passed.detail.contains("32 of them kept for root and uid \(getuid()); per-uid cap 1024 for everyone else"), "got \(passed.detail)")
        let unreserved = try DaemonProcess(extraArguments: ["--reserved-connections", "0"])
        let locked = try check(try unreserved.connect().audit(), "descriptor-limit")
        #expect(locked.status == .warn)
        #expect(locked.detail.contains("with no reserved slots, other users can hold every slot and lock root out"), "got \(locked.detail)")
    }

    @Test func theKillSwitchCheckWarnsWhileTrippedAndSaysHowToClearIt() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        _ = try connection.kill(reason: "drill")
        let killed = try check(try connection.audit(), "kill-switch")
        #expect(killed.status == .warn)
        #expect(killed.detail.contains("by uid \(getuid()): drill; clear it with 'secureopsd reset-kill --state-dir \(daemon.stateDirectory)'"))
    }

    /// Deep audits used to read the whole log every time, so a peer could
    /// make each one slower than the last: now a deep audit verifies what
    /// was written since the last one, after checking that the last record
    /// it verified is unchanged, and reads the whole file at most every
    /// five minutes.
    @Test func aDeepAuditVerifiesOnlyWhatWasWrittenSinceTheLastOne() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        let first = try check(try connection.audit(AuditOptions(deep: true)), "audit-log-chain")
        #expect(first.status == .pass)
        // Only `start` so far (an audit run is recorded after it ran).
        #expect(first.detail.hasPrefix("all 1 records verify"), "got \(first.detail)")
        _ = try connection.kill(reason: "one")
        _ = try connection.kill(reason: "two")
        let second = try check(try connection.audit(AuditOptions(deep: true)), "audit-log-chain")
        #expect(second.status == .pass)
        // start | audit-run, kill, kill
        #expect(second.detail.hasPrefix("the 3 records from seq 2 on verify (MACs, sequence, chain, head at seq 4)"), "got \(second.detail)")
        #expect(second.detail.contains("follow the 1 verified before"))

        // An edit after the last verified record (and before the last
        // record, which the quick tail check covers) is caught by the next one.
        _ = try connection.kill(reason: "three")
        _ = try connection.kill(reason: "four")
        try overwrite(daemon.stateDirectory + "/audit.log", first: "three", with: "X")
        let third = try check(try connection.audit(AuditOptions(deep: true)), "audit-log-chain")
        #expect(third.status == .fail)
        #expect(third.detail.contains("(seq 6): MAC mismatch"), "got \(third.detail)")
    }

    /// The last record a deep audit verified is read again by the next one:
    /// an edit there shows even though the records before it are not read.
    @Test func aDeepAuditNoticesTheLastVerifiedRecordWasRewritten() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        _ = try connection.kill(reason: "anchor")
        #expect(try check(try connection.audit(AuditOptions(deep: true)), "audit-log-chain").status == .pass)
        try overwrite(daemon.stateDirectory + "/audit.log", first: "anchor", with: "X")
        let second = try check(try connection.audit(AuditOptions(deep: true)), "audit-log-chain")
        #expect(second.status == .fail)
        #expect(second.detail.contains("line 2 (seq 2): changed after it was verified"), "got \(second.detail)")
    }

    /// Overwrites, in place, the first occurrence of `text` in a file.
    func overwrite(_ path: String, first text: String, with replacement: String) throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let offset = try #require(bytes.range(of: Data(text.utf8))).lowerBound
        let fd = open(path, O_WRONLY)
        defer { close(fd) }
        #expect(pwrite(fd, replacement, replacement.utf8.count, off_t(offset)) == replacement.utf8.count)
    }

    /// In a user namespace, every peer whose uid is not mapped shows up as
    /// the overflow uid 65534: a grant to it is a grant to all of them.
    @Test func aGrantToTheOverflowUidFailsInAUserNamespaceAndWarnsOutsideOne() throws {
        let policy = #"{"version": 2, "grants": [{"uid": 65534, "allow": ["ping", "status"]}]}"#
        let outside = try DaemonProcess(policy: policy)
        let warned = try check(try outside.connect().audit(), "policy-grants")
        #expect(warned.status == .warn)
        #expect(warned.detail.hasPrefix("uid 65534 (ping, status): uid 65534 / gid 65534 is the overflow id"), "got \(warned.detail)")

        let inside = try DaemonProcess(policy: policy, launcher: ["/usr/bin/unshare", "--user", "--map-root-user"])
        let failed = try check(try inside.connect().audit(), "policy-grants")
        #expect(failed.status == .fail)
        #expect(failed.detail.contains("the daemon runs in a user namespace (uid_map 0 0 1), where every peer whose uid is not mapped appears as uid 65534"), "got \(failed.detail)")

        let clean = try DaemonProcess(policy: #"{"version": 2, "grants": [{"uid": 4242, "allow": ["ping"]}]}"#)
        #expect(try check(try clean.connect().audit(), "policy-grants").status == .pass)
    }
}
