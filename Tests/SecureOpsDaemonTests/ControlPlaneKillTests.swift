import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The kill switch: the alert, persistence across restarts, `reset-kill`,
/// and the `onKill` command with its environment, exit status and timeout.
@Suite("Control plane: kill switch")
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
}
