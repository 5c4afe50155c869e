import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The kill switch: the alert, persistence across restarts, `reset-kill`,
/// and the `onKill` command with its environment, exit status and timeout.
@Suite("Control plane: kill switch", .timeLimit(.minutes(2)))
struct ControlPlaneKillTests {
    /// A policy whose onKill runs `script` (written into the daemon's
    /// directory, mode 0755).
    func daemonWithOnKill(_ script: String, timeoutSecs: Double) throws -> (DaemonProcess, String) {
        let directory = try makeTemporaryDirectory("secureops-test")
        let program = directory + "/stop-agent.sh"
        try script.write(toFile: program, atomically: false, encoding: .utf8)
        chmod(program, 0o755)
        let policy = #"{"version": 2, "grants": [], "onKill": {"command": ["\#(program)", "--now"], "timeoutSecs": \#(timeoutSecs)}}"#
        return (try DaemonProcess(policy: policy, directory: directory), directory)
    }

    @Test func killBroadcastsACriticalAlertWithTheReasonAndTheCaller() throws {
        let daemon = try DaemonProcess()
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let (status, output) = try run(DaemonProcess.cliPath, ["kill", "--reason", "agent ran rm -rf /", "--socket", daemon.socketPath, "--json"])
        #expect(status == 0)
        #expect(output.hasPrefix(#"{"type":"ok","killed":true,"sequence":1}"#), "got \(output)")
        guard case .alert(let alert)? = try subscriber.nextPush(timeout: 10) else {
            Issue.record("no kill alert")
            return
        }
        #expect(alert.severity == .critical)
        #expect(alert.source == "secureopsd")
        #expect(alert.message == "kill switch tripped: agent ran rm -rf /")
        guard case .object(let details)? = alert.details?.value else {
            Issue.record("no details")
            return
        }
        #expect(details["reason"] == .string("agent ran rm -rf /"))
        #expect(details.int("uid") == Int(getuid()))
        #expect((details.int("pid") ?? 0) > 0)
        // Recorded (fsync'd) before the ok was sent.
        let kills = try auditFields(daemon.stateDirectory, event: "kill")
        #expect(kills.count == 1)
        #expect(kills.first?.string("reason") == "agent ran rm -rf /")
        #expect(kills.first?.int("alertSequence") == 1)
        #expect(kills.first?.int("pid") == details.int("pid"))
    }

    @Test func theTrippedStateSurvivesARestartUntilResetKillClearsItAndThatIsRecorded() throws {
        let daemon = try DaemonProcess()
        _ = try daemon.connect().kill(reason: "drill")
        #expect(fileMode(daemon.stateDirectory + "/kill-switch.json") == 0o600)
        try daemon.restart()
        let afterRestart = try daemon.connect().status()
        #expect(afterRestart.killed)
        #expect(afterRestart.killReason == "drill")
        #expect(daemon.log.contains("kill switch is tripped (drill)"))

        // Refused while the daemon runs.
        let (refused, refusal) = try runDaemon(["reset-kill", "--state-dir", daemon.stateDirectory, "--socket", daemon.socketPath])
        #expect(refused == 2)
        #expect(refusal.contains("secureopsd is running on \(daemon.socketPath); stop it first"))

        try daemon.stop()
        let (status, output) = try runDaemon(["reset-kill", "--state-dir", daemon.stateDirectory, "--socket", daemon.socketPath])
        #expect(status == 0, "\(output)")
        #expect(output.contains("kill switch cleared (was tripped at "))
        #expect(output.contains(": drill)\nrecorded in \(daemon.stateDirectory)/audit.log"), "got \(output)")
        try daemon.restart()
        #expect(try daemon.connect().status().killed == false)
        try daemon.stop()

        let events = try auditRecords(daemon.stateDirectory).compactMap { $0.string("event") }
        #expect(events == ["start", "kill", "stop", "start", "stop", "kill-reset", "start", "stop"])
        let reset = try auditFields(daemon.stateDirectory, event: "kill-reset")
        #expect(reset.first?["wasTripped"] == .bool(true))
        #expect(reset.first?.string("previousReason") == "drill")
        #expect(reset.first?.int("byUid") == Int(getuid()))
        let (verified, report) = try verifyLog(daemon.stateDirectory)
        #expect(verified == 0, "\(report)")
        #expect(report.contains("intact, 8 record(s)"))
    }

    @Test func resetKillRefusesWhileADaemonHoldsTheStateDirectoryEvenOnAnotherSocket() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try runDaemon(["reset-kill", "--state-dir", daemon.stateDirectory, "--socket", daemon.directory + "/other.sock"])
        #expect(status == 2)
        #expect(output.contains("is locked by another process: is secureopsd running with this state directory?"), "got \(output)")
    }

    @Test func killRunsTheOnKillCommandWithoutAShellAndRecordsItsExitStatus() throws {
        let scratch = try makeTemporaryDirectory("secureops-test-onkill")
        let marker = scratch + "/ran"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let script = """
            #!/bin/sh
            { echo "args=$*"; echo "reason=$SECUREOPS_KILL_REASON"; echo "uid=$SECUREOPS_KILL_UID"; echo "pid=$SECUREOPS_KILL_PID"; } > \(marker).tmp
            mv \(marker).tmp \(marker)
            exit 3
            """
        let (daemon, _) = try daemonWithOnKill(script, timeoutSecs: 10)
        let connection = try daemon.connect()
        _ = try connection.kill(reason: "$(touch /tmp/pwned) `id`; rm -rf /")
        try waitUntil("the onKill command to run") { FileManager.default.fileExists(atPath: marker) }
        let ran = try String(contentsOfFile: marker, encoding: .utf8)
        #expect(ran.contains("args=--now"))
        // The reason reaches the command as data, never through a shell.
        #expect(ran.contains("reason=$(touch /tmp/pwned) `id`; rm -rf /"))
        #expect(ran.contains("uid=\(getuid())"))
        let finished = try waitForAuditRecord(daemon.stateDirectory, event: "onkill-finished")
        #expect(finished.first?.int("exitStatus") == 3)
        #expect(finished.first?.string("outcome") == "exited with status 3")
        try waitUntil("the outcome in the daemon's log") { daemon.log.contains("onKill command failed") }
        #expect(daemon.log.contains("exited with status 3"))
    }

    @Test func anOnKillCommandThatOverrunsItsTimeoutIsTerminatedAndThatIsRecorded() throws {
        let (daemon, _) = try daemonWithOnKill("#!/bin/sh\nexec sleep 60\n", timeoutSecs: 0.5)
        let started = Date()
        _ = try daemon.connect().kill(reason: "stuck agent")
        // kill answers at once; the command runs on the Dispatch pool.
        #expect(Date().timeIntervalSince(started) < 5)
        let finished = try waitForAuditRecord(daemon.stateDirectory, event: "onkill-finished", timeout: 20)
        #expect(finished.first?["timedOut"] == .bool(true))
        #expect(finished.first?.string("outcome") == "timed out and was terminated")
        let duration = finished.first?.int("durationMs") ?? 0
        #expect(duration >= 500 && duration < 60_000, "took \(duration) ms")
        #expect(daemon.log.contains("timed out and was terminated"))
        // The daemon is unaffected.
        try daemon.connect().ping()
    }

    @Test func aNewlineInAKillReasonCannotForgeAnAuditRecordOrALogLine() throws {
        let daemon = try DaemonProcess()
        let forged = #"{"seq":3,"time":"2026-01-01T00:00:00.000Z","event":"kill-reset","fields":{},"prev":"00","mac":"00"}"#
        let reason = "innocent\n" + forged + "\r\n"
        _ = try daemon.connect().kill(reason: reason)
        try daemon.stop()
        let text = try String(contentsOfFile: daemon.stateDirectory + "/audit.log", encoding: .utf8)
        let records = try auditRecords(daemon.stateDirectory)
        #expect(text.split(separator: "\n").count == records.count)
        #expect(records.compactMap { $0.string("event") } == ["start", "kill", "stop"])
        #expect(try auditFields(daemon.stateDirectory, event: "kill").first?.string("reason") == reason)
        #expect(!daemon.log.contains("\n" + forged))
        #expect(daemon.log.contains(#"innocent\n{"seq":3"#))
        let (status, _) = try verifyLog(daemon.stateDirectory)
        #expect(status == 0)
    }

    // MARK: - Who can change what kill runs

    /// A root-owned program in a directory another user owns: that user
    /// could swap it, so the policy is refused at start (and at reload).
    @Test func aPolicyWhoseOnKillProgramAnotherUserCouldSwapIsRefused() throws {
        let directory = try makeTemporaryDirectory("secureops-test")
        let bin = directory + "/bin"
        mkdir(bin, 0o755)
        let program = try writeStopAgent(in: bin)
        chown(bin, 65534, 65534)
        let policy = directory + "/policy.json"
        try #"{"version": 2, "grants": [], "onKill": {"command": ["\#(program)"]}}"#.write(toFile: policy, atomically: false, encoding: .utf8)
        let (status, output) = try runDaemon(["--socket", directory + "/s.sock", "--state-dir", directory + "/state", "--policy", policy])
        #expect(status != 0)
        #expect(output.contains("policy \(policy): onKill.command[0]: \(program): \(bin) is owned by uid 65534, who could replace what lies beneath it"), "got \(output)")
    }

    /// The program is checked again right before it runs, and the checked
    /// descriptor is what runs: after its directory changed hands and the
    /// new owner replaced the program, kill refuses to run it.
    @Test func anOnKillProgramSwappedAfterTheReloadIsNotRun() throws {
        let scratch = try makeTemporaryDirectory("secureops-test-swap")
        chmod(scratch, 0o755)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let marker = scratch + "/attacker-ran"
        let bin = scratch + "/bin"
        mkdir(bin, 0o755)
        let program = try writeStopAgent(in: bin)
        let daemon = try DaemonProcess(policy: #"{"version": 2, "grants": [], "onKill": {"command": ["\#(program)"], "timeoutSecs": 5}}"#)
        // An administrator's mistake: the directory is given to another user,
        // who swaps the program for their own script.
        chown(bin, 65534, 65534)
        let (swapped, swapOutput) = try run("/usr/bin/setpriv", SecondUser.setpriv() + [
            "/bin/sh", "-c", "rm -f \(program) && printf '#!/bin/sh\\ntouch \(marker)\\n' > \(program) && chmod 755 \(program)",
        ])
        #expect(swapped == 0, "\(swapOutput)")
        _ = try daemon.connect().kill(reason: "swap test")
        let finished = try waitForAuditRecord(daemon.stateDirectory, event: "onkill-finished")
        #expect(finished.first?.string("outcome")?.hasPrefix("could not start: refused: \(program): \(bin) is owned by uid 65534") == true, "got \(String(describing: finished.first))")
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(daemon.log.contains("onKill command failed"))
    }

    /// Kills arriving while onKill runs do not start runs of their own: they
    /// are folded into one more run after it, on the runner's own thread.
    @Test func killsDuringAnOnKillRunAreCoalescedIntoOneMoreRun() throws {
        let scratch = try makeTemporaryDirectory("secureops-test-coalesce")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let runs = scratch + "/runs"
        let (daemon, _) = try daemonWithOnKill("#!/bin/sh\necho run >> \(runs)\nsleep 1\n", timeoutSecs: 10)
        let connection = try daemon.connect()
        for index in 0..<10 { try connection.send(.kill(reason: "burst \(index)")) }
        for _ in 0..<10 {
            guard case .ok = try connection.reply(timeout: 10) else { throw TestFailure("a kill was not answered") }
        }
        try waitUntil(timeout: 20, "two onKill runs") { try auditFields(daemon.stateDirectory, event: "onkill-finished").count >= 2 }
        let finished = try auditFields(daemon.stateDirectory, event: "onkill-finished")
        #expect(finished.count == 2, "\(finished)")
        // Every kill is accounted for: one started the first run, every other
        // was folded into a run. (How many the first run took depends on how
        // soon its thread started: none of the other 9 here when idle, 4 on a
        // loaded CI machine; the second took the rest.)
        let coalesced = finished.compactMap { $0.int("coalescedKills") }
        #expect(coalesced.count == 2 && 1 + coalesced.reduce(0, +) == 10 && coalesced[1] > 0, "\(finished)")
        #expect(try String(contentsOfFile: runs, encoding: .utf8).split(separator: "\n").count == 2)
        #expect(try auditFields(daemon.stateDirectory, event: "kill").count == 10)
    }

    /// The switch keeps the first trip: a later kill cannot rewrite why or
    /// by whom it was tripped; it is recorded and broadcast as a repeat.
    @Test func laterKillsKeepTheFirstTripAndAreRecordedAsRepeats() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        _ = try connection.kill(reason: "the real reason")
        guard case .ok(let again) = try connection.request(.kill(reason: "cover story")) else { throw TestFailure("second kill failed") }
        #expect(again["alreadyTripped"] == .bool(true))
        #expect(try connection.status().killReason == "the real reason")
        let state = try String(contentsOfFile: daemon.stateDirectory + "/kill-switch.json", encoding: .utf8)
        #expect(state.contains("the real reason") && !state.contains("cover story"))
        let kills = try auditFields(daemon.stateDirectory, event: "kill")
        #expect(kills.map { $0.string("reason") } == ["the real reason", "cover story"])
        #expect(kills.map { $0["alreadyTripped"] } == [.bool(false), .bool(true)])
        let alerts = try connection.alerts()
        #expect(alerts.map(\.message) == ["kill switch tripped: the real reason", "kill requested again (switch already tripped): cover story"])
    }
}
