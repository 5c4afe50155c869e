import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The signed audit log: its format and files, `verify-log` against every
/// kind of tampering, continuing the chain across restarts, damaged logs,
/// and write failures on a full disk.
@Suite("Signed audit log", .timeLimit(.minutes(2)))
struct AuditLogTests {
    /// A stopped daemon whose log holds start, kill, reload, audit, stop.
    func stoppedDaemonWithRecords() throws -> DaemonProcess {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        _ = try connection.kill(reason: "drill one")
        _ = try connection.reloadPolicy()
        _ = try connection.audit(AuditOptions(fix: true))
        connection.close()
        try daemon.stop()
        return daemon
    }

    @Test func theKeyAndTheLogAreMode0600AndEveryRecordLinksToTheOneBefore() throws {
        let daemon = try stoppedDaemonWithRecords()
        let state = daemon.stateDirectory
        #expect(fileMode(state + "/audit.key") == 0o600)
        #expect(fileMode(state + "/audit.log") == 0o600)
        #expect(fileMode(state + "/audit.head") == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: state + "/audit.key")).count == 32)

        let lines = try String(contentsOfFile: state + "/audit.log", encoding: .utf8).split(separator: "\n").map(String.init)
        let records = try auditRecords(state)
        #expect(records.compactMap { $0.string("event") } == ["start", "kill", "policy-reload", "audit-run", "stop"])
        #expect(records.compactMap { $0.int("seq") } == [1, 2, 3, 4, 5])
        #expect(records.first?.string("prev") == String(repeating: "0", count: 64))
        for index in 1..<records.count {
            #expect(records[index].string("prev") == sha256Hex(lines[index - 1]))
        }
        for record in records {
            #expect(record.string("mac")?.count == 64)
            #expect(record.string("time")?.hasSuffix("Z") == true)
        }
        // Only the fields the format defines, in this order.
        #expect(lines.allSatisfy { $0.hasPrefix(#"{"seq":"#) && $0.contains(#","mac":""#) })
        let start = try #require(try auditFields(state, event: "start").first)
        #expect(start.int("pid") == Int(daemon.pid))
        #expect(start.string("socket") == daemon.socketPath)
    }

    @Test func verifyLogPassesAnIntactLog() throws {
        let daemon = try stoppedDaemonWithRecords()
        let (status, output) = try verifyLog(daemon.stateDirectory)
        #expect(status == 0)
        #expect(output.hasPrefix("\(daemon.stateDirectory)/audit.log: intact, 5 record(s) (seq 1–5, "), "got \(output)")
        #expect(output.contains("end anchored by audit.head at seq 5"))
        let (jsonStatus, json) = try verifyLog(daemon.stateDirectory, ["--json"])
        #expect(jsonStatus == 0)
        #expect(json.contains(#""intact":true"#) && json.contains(#""records":5"#) && json.contains(#""problem":null"#))
    }

    /// What an attacker without the key can do to the file, and the first
    /// bad record `verify-log` must name for it.
    enum Tamper: String, CaseIterable, Sendable {
        case editedReason, deletedRecord, swappedPair, deletedFirst, deletedLast, duplicated, blankedLine, truncatedMidRecord, headDeleted

        func apply(_ lines: inout [String]) {
            switch self {
            case .editedReason: lines[1] = lines[1].replacingOccurrences(of: "drill one", with: "drill two")
            case .deletedRecord: lines.remove(at: 2)
            case .swappedPair: lines.swapAt(1, 2)
            case .deletedFirst: lines.removeFirst()
            case .deletedLast: lines.removeLast()
            case .duplicated: lines.insert(lines[1], at: 2)
            case .blankedLine: lines[2] = ""
            case .truncatedMidRecord, .headDeleted: break
            }
        }

        var expected: String {
            switch self {
            case .editedReason: "first bad record: line 2 (seq 2): MAC mismatch: the record was edited after it was written"
            case .deletedRecord: "first bad record: line 3 (seq 4): sequence gap: expected seq 3, found seq 4; seq 3 is not in the file (records were deleted)"
            case .swappedPair: "first bad record: line 2 (seq 3): out of order: expected seq 2, found seq 3; seq 2 is at line 3 (records were reordered)"
            case .deletedFirst: "first bad record: line 1 (seq 2): sequence gap: expected seq 1, found seq 2"
            case .deletedLast: "first bad record: line 5 (seq 5): missing: the log ends at seq 4 but audit.head records that it reached seq 5 (records were deleted from the end)"
            case .duplicated: "first bad record: line 3 (seq 2): out of order: expected seq 3, found seq 2 again"
            case .blankedLine: "first bad record: line 3: unparsable line: empty"
            case .truncatedMidRecord: "first bad record: line 5: incomplete record at the end of the file (no newline)"
            case .headDeleted: "first bad record: line 6: audit.head is missing"
            }
        }
    }

    @Test(arguments: Tamper.allCases)
    func verifyLogNamesTheFirstBadRecordAfterTampering(_ tamper: Tamper) throws {
        let daemon = try stoppedDaemonWithRecords()
        let log = daemon.stateDirectory + "/audit.log"
        var text = try String(contentsOfFile: log, encoding: .utf8)
        switch tamper {
        case .truncatedMidRecord:
            text = String(text.dropLast(40))
        case .headDeleted:
            try FileManager.default.removeItem(atPath: daemon.stateDirectory + "/audit.head")
        default:
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            lines.removeLast() // the empty string after the final newline
            tamper.apply(&lines)
            text = lines.joined(separator: "\n") + "\n"
        }
        try text.write(toFile: log, atomically: false, encoding: .utf8)
        let (status, output) = try verifyLog(daemon.stateDirectory)
        #expect(status == 1, "\(tamper): \(output)")
        #expect(output.contains("audit.log: NOT intact"), "\(output)")
        #expect(output.contains(tamper.expected), "\(tamper): got \(output)")
    }

    @Test func verifyLogWithoutTheKeyExitsTwoAndSaysSo() throws {
        let daemon = try stoppedDaemonWithRecords()
        try FileManager.default.removeItem(atPath: daemon.stateDirectory + "/audit.key")
        let (status, output) = try verifyLog(daemon.stateDirectory)
        #expect(status == 2)
        #expect(output.contains("verify-log: cannot read the key: \(daemon.stateDirectory)/audit.key does not exist"), "got \(output)")
    }

    @Test func theChainContinuesAcrossRestartsWithoutAGap() throws {
        let daemon = try DaemonProcess()
        try daemon.restart()
        _ = try daemon.connect().kill(reason: nil)
        try daemon.restart()
        try daemon.stop()
        let records = try auditRecords(daemon.stateDirectory)
        #expect(records.compactMap { $0.int("seq") } == Array(1...7))
        #expect(records.compactMap { $0.string("event") } == ["start", "stop", "start", "kill", "stop", "start", "stop"])
        #expect(try verifyLog(daemon.stateDirectory).0 == 0)
    }

    @Test func aLogWhoseTailWasDamagedIsMovedAsideAndANewChainSaysWhy() throws {
        let daemon = try stoppedDaemonWithRecords()
        let log = daemon.stateDirectory + "/audit.log"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"seq":6,"event":"forged"}"#.utf8) + Data([0x0A]))
        try handle.close()

        try daemon.restart()
        #expect(daemon.log.contains("audit log could not be continued (its last record does not verify: unparsable line: not a signed record"))
        let names = try FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory)
        let aside = try #require(names.first { $0.hasPrefix("audit.log.broken-") })
        let records = try auditRecords(daemon.stateDirectory)
        #expect(records.first?.string("event") == "log-reset")
        #expect(records.first?.int("seq") == 1)
        let reset = try auditFields(daemon.stateDirectory, event: "log-reset")
        #expect(reset.first?.string("previousLog") == daemon.stateDirectory + "/" + aside)

        // The audit says a damaged log is kept aside; verify-log checks it.
        let report = try daemon.connect().audit()
        let chain = try #require(report.checks.first { $0.id == "audit-log-chain" })
        #expect(chain.status == .warn)
        #expect(chain.detail.contains(aside))
        let (status, output) = try verifyLog(daemon.stateDirectory, ["--log", daemon.stateDirectory + "/" + aside])
        #expect(status == 1)
        #expect(output.contains("first bad record: line 6 (seq 6): unparsable line"), "got \(output)")
        try daemon.stop()
        #expect(try verifyLog(daemon.stateDirectory).0 == 0)
    }

    @Test func aLogCutShortWhileTheDaemonWasStoppedIsNotContinued() throws {
        let daemon = try stoppedDaemonWithRecords()
        let log = daemon.stateDirectory + "/audit.log"
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        try (lines.dropLast(2).joined(separator: "\n") + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        try daemon.restart()
        #expect(daemon.log.contains("it ends at seq 3 but audit.head records that it reached seq 5: records were deleted from the end"))
        #expect(try auditRecords(daemon.stateDirectory).first?.string("event") == "log-reset")
    }

    @Test func aKeyOwnedBySomeoneElseStopsStartupWithTheFix() throws {
        let daemon = try DaemonProcess()
        try daemon.stop()
        chown(daemon.stateDirectory + "/audit.key", 65534, 65534)
        let (status, output) = try runDaemon(["--socket", daemon.socketPath, "--state-dir", daemon.stateDirectory])
        #expect(status != 0)
        #expect(output.contains("audit key: \(daemon.stateDirectory)/audit.key is owned by uid 65534, not the daemon's uid \(getuid()): someone else made or replaced it"), "got \(output)")
    }

    @Test func aKeyReadableByOthersIsRecordedAtStartAndRepairedByAuditFix() throws {
        let daemon = try DaemonProcess()
        try daemon.stop()
        chmod(daemon.stateDirectory + "/audit.key", 0o644)
        try daemon.restart()
        #expect(daemon.log.contains("audit.key has mode 0644: others may read it"))
        let warning = try auditFields(daemon.stateDirectory, event: "file-permissions")
        #expect(warning.first?.string("path") == daemon.stateDirectory + "/audit.key")
        #expect(warning.first?.string("mode") == "0644")

        let connection = try daemon.connect()
        let before = try #require(try connection.audit().checks.first { $0.id == "audit-log-files" })
        #expect(before.status == .fail)
        #expect(before.detail.contains("audit.key has mode 0644: others can read the key and forge records"))
        let fixed = try #require(try connection.audit(AuditOptions(fix: true)).checks.first { $0.id == "audit-log-files" })
        #expect(fixed.status == .pass)
        #expect(fixed.fixed)
        #expect(fileMode(daemon.stateDirectory + "/audit.key") == 0o600)
        // A run that repaired something is recorded durably, naming the check.
        let runs = try auditFields(daemon.stateDirectory, event: "audit-run")
        #expect(runs.last?["fixed"] == .array([.string("audit-log-files")]))
    }

    @Test func statusReportsTheAuditLogsHealth() throws {
        let daemon = try DaemonProcess()
        let frame = try daemon.connect().request(.status)
        guard case .ok(let payload) = frame else {
            Issue.record("status failed: \(frame)")
            return
        }
        #expect(payload["auditLogHealthy"] == .bool(true))
        #expect(payload.int("auditLogRecords") == 1)
        #expect(payload.int("auditLogLost") == 0)
        #expect(payload["auditLogError"] == nil)
    }

    /// A subscriber that falls behind is cut off by the engine, for lag
    /// (onLag = disconnect: it reads, but more slowly than alerts arrive) or
    /// for a send stuck past its deadline (it never reads); both are
    /// recorded with the peer.
    @Test(arguments: [
        // Without the journal: with it, a subscriber behind the ring is
        // served from disk and does not lag.
        ("lagged", #"{"version": 2, "grants": [], "limits": {"retainedAlerts": 16, "onLag": "disconnect"}}"#, ["--no-journal"]),
        ("slow", #"{"version": 2, "grants": []}"#, ["--stuck-send-timeout", "0.5"]),
    ])
    func aSubscriberCutOffForLagOrSlownessIsRecorded(reason: String, policy: String, arguments: [String]) throws {
        let daemon = try DaemonProcess(extraArguments: arguments, policy: policy)
        let stalled = try RawClient(path: daemon.socketPath)
        try stalled.write(#"{"type":"subscribe"}"# + "\n")
        _ = try daemon.waitForStatus { $0.subscribers == 1 }
        if reason == "lagged" {
            // Lag is noticed when a send completes, so this one keeps its
            // sends completing: 4 KiB every 10 ms, far below the flood. (One
            // that never reads has its send stuck: that is the "slow" case.)
            // The reader gets its own descriptor: `stalled` closes its one
            // when the test ends, and a loop still reading that number would
            // read whatever the number is reused for next (once it was the
            // socket Foundation watches for another test's daemon to exit,
            // and that test's waitUntilExit never returned).
            let fd = dup(stalled.fd)
            Thread {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 { usleep(10_000) }
                close(fd)
            }.start()
        }
        let publisher = try daemon.connect()
        let message = String(repeating: "x", count: 2048)
        try waitUntil(timeout: 30, "the stalled subscriber to be cut off") {
            for _ in 0..<500 { try publisher.send(.publish(AlertInput(severity: .info, source: "load", message: message))) }
            for _ in 0..<500 { _ = try publisher.reply() }
            return try !auditFields(daemon.stateDirectory, event: "subscriber-cut-off").isEmpty
        }
        let cut = try auditFields(daemon.stateDirectory, event: "subscriber-cut-off")
        #expect(cut.first?.string("reason") == reason)
        #expect(cut.first?.int("uid") == Int(getuid()))
        #expect(cut.first?.int("pid") == Int(getpid()))
    }

    /// The state directory on a tiny tmpfs: when it fills up the daemon
    /// keeps serving, says so in status and the audit, and once space is
    /// back records how many records were lost.
    @Test func aFullDiskMakesTheLogUnhealthyWithoutStoppingTheDaemonAndLossIsRecordedLater() throws {
        let directory = try makeTemporaryDirectory("secureops-test-full")
        let state = directory + "/state"
        mkdir(state, 0o700)
        let (mounted, why) = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", state])
        guard mounted == 0 else {
            // Needs CAP_SYS_ADMIN; skip where a sandbox denies mounts.
            print("skipping the full-disk test: cannot mount a tmpfs here (\(why.trimmingCharacters(in: .whitespacesAndNewlines)))")
            try? FileManager.default.removeItem(atPath: directory)
            return
        }
        var started: DaemonProcess?
        defer {
            // Stop, unmount, then remove: a mount point cannot be removed.
            _ = try? started?.stop()
            _ = try? run("/bin/umount", ["-l", state])
            try? FileManager.default.removeItem(atPath: directory)
        }
        let daemon = try DaemonProcess(directory: directory)
        started = daemon
        let connection = try daemon.connect()
        // Fill the file system.
        _ = try run("/bin/dd", ["if=/dev/zero", "of=\(state)/filler", "bs=4k", "count=64"])
        // Each run appends a record; the log's last page fills after a few.
        for _ in 0..<60 {
            _ = try connection.audit()
            if case .ok(let payload) = try connection.request(.status), payload["auditLogHealthy"] == .bool(false) { break }
        }
        let unhealthy = try waitForHealth(connection, healthy: false)
        #expect(unhealthy["auditLogError"]?.stringValue?.contains("No space left on device") == true, "got \(unhealthy)")
        #expect((unhealthy.int("auditLogLost") ?? 0) >= 1)
        try connection.ping()
        let chain = try #require(try connection.audit().checks.first { $0.id == "audit-log-chain" })
        #expect(chain.status == .fail)
        #expect(chain.detail.contains("writes are failing"))
        #expect(daemon.log.contains("audit log write failed"))

        try FileManager.default.removeItem(atPath: state + "/filler")
        _ = try connection.audit()
        _ = try waitForHealth(connection, healthy: true)
        try daemon.stop()
        let lost = try auditFields(state, event: "records-lost")
        #expect(lost.count == 1)
        #expect((lost.first?.int("writeFailures") ?? 0) >= 1)
        let (status, output) = try verifyLog(state)
        #expect(status == 0, "a failed write must not leave a torn record: \(output)")
    }

    // MARK: - Deleted logs, cut-off tails, unclean ends

    /// Deleting the log and its head while keeping the key used to leave a
    /// state directory that verified as "intact" after the next start.
    @Test(arguments: ["deleted", "emptied"])
    func aKeyWithoutItsLogIsTamperingForVerifyLogAndIsRecordedAtStart(_ how: String) throws {
        let daemon = try stoppedDaemonWithRecords()
        let state = daemon.stateDirectory
        if how == "deleted" {
            try FileManager.default.removeItem(atPath: state + "/audit.log")
        } else {
            truncate(state + "/audit.log", 0)
        }
        try FileManager.default.removeItem(atPath: state + "/audit.head")
        let (status, output) = try verifyLog(state)
        #expect(status == 1, "\(output)")
        let expected = how == "deleted" ? "the log file is missing, but audit.key exists: the log (and its head) were deleted" : "the log is empty, but audit.key exists: its records were deleted"
        #expect(output.contains(expected), "got \(output)")

        try daemon.restart()
        #expect(daemon.log.contains("audit log was tampered with: audit.log was missing or empty although audit.key exists"), "\(daemon.log)")
        try daemon.stop()
        let records = try auditRecords(state)
        #expect(records.first?.string("event") == "log-reset")
        let reset = try #require(try auditFields(state, event: "log-reset").first)
        #expect(reset.string("reason")?.hasPrefix("audit.log was missing or empty although audit.key exists") == true)
        #expect(reset["previousLog"] == .null)
        // The new chain verifies, and verify-log shows the reset.
        let (after, report) = try verifyLog(state)
        #expect(after == 0, "\(report)")
        #expect(report.contains("note: seq 1 ("), "got \(report)")
        #expect(report.contains("a new chain was started: audit.log was missing or empty although audit.key exists"), "got \(report)")
    }

    /// Records that are not fsync'd at once (audit runs, denials) are
    /// anchored by audit.head within a second, so a log cut back while the
    /// daemon is stopped fails verification.
    @Test func recordsThatAreNotDurableAreAnchoredSoATruncationAfterAKillShows() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        for _ in 0..<300 { try connection.send(.audit(AuditOptions())) }
        for _ in 0..<300 { _ = try connection.reply(timeout: 30) }
        let state = daemon.stateDirectory
        // Every audit-run record is written, then anchored.
        var lastSeq = 0
        try waitUntil("audit.head to anchor the last record") {
            let records = try auditRecords(state)
            guard records.filter({ $0.string("event") == "audit-run" }).count == 300 else { return false }
            lastSeq = records.last?.int("seq") ?? 0
            let head = try String(contentsOfFile: state + "/audit.head", encoding: .utf8)
            return head.contains(#""seq":\#(lastSeq),"#)
        }
        try daemon.stop(signal: SIGKILL)
        let log = state + "/audit.log"
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        try (lines.dropLast(250).joined(separator: "\n") + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        let (status, output) = try verifyLog(state)
        #expect(status == 1, "\(output)")
        #expect(output.contains("missing: the log ends at seq \(lastSeq - 250) but audit.head records that it reached seq \(lastSeq)"), "got \(output)")
    }

    @Test func aRunThatEndedWithoutStoppingIsRecordedAtTheNextStart() throws {
        let daemon = try DaemonProcess()
        _ = try daemon.connect().kill(reason: "before the crash")
        try daemon.stop(signal: SIGKILL)
        try daemon.restart()
        try daemon.stop()
        let unclean = try #require(try auditFields(daemon.stateDirectory, event: "unclean-shutdown").first)
        #expect(unclean.int("lastSeq") == 2)
        #expect(unclean.string("lastEvent") == "kill")
        #expect(unclean.int("anchoredSeq") == 2)
        #expect(try auditRecords(daemon.stateDirectory).compactMap { $0.string("event") } == ["start", "kill", "unclean-shutdown", "start", "stop"])
        let (status, output) = try verifyLog(daemon.stateDirectory)
        #expect(status == 0)
        #expect(output.contains("the run before ended without stopping (its last record is seq 2)"), "got \(output)")
    }

    private func waitForHealth(_ connection: SecureOpsConnection, healthy: Bool) throws -> JSONObject {
        var last: JSONObject = [:]
        try waitUntil("auditLogHealthy == \(healthy)") {
            guard case .ok(let payload) = try connection.request(.status) else { return false }
            last = payload
            return payload["auditLogHealthy"] == .bool(healthy)
        }
        return last
    }
}

/// SHA-256 of a line, hex, computed with the system's sha256sum (an
/// independent implementation).
func sha256Hex(_ line: String) -> String {
    let temporary = NSTemporaryDirectory() + "secureops-sha-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: temporary) }
    try? line.write(toFile: temporary, atomically: false, encoding: .utf8)
    let output = (try? run("/usr/bin/sha256sum", [temporary]).1) ?? ""
    return String(output.prefix(64))
}
