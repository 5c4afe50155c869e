import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The `secureops` command line against a real daemon.
@Suite("CLI", .timeLimit(.minutes(2)))
struct CLITests {
    func cli(_ daemon: DaemonProcess, _ arguments: [String]) throws -> (Int32, String) {
        try run(DaemonProcess.cliPath, arguments + ["--socket", daemon.socketPath])
    }

    @Test func pingPrintsOk() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try cli(daemon, ["ping"])
        #expect(status == 0)
        #expect(output.hasPrefix("ok ("))
    }

    @Test func jsonPrintsTheRawFrame() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try cli(daemon, ["ping", "--json"])
        #expect(status == 0)
        #expect(output == "{\"type\":\"ok\"}\n")
    }

    @Test func statusPrintsAReadableBlock() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try cli(daemon, ["status"])
        #expect(status == 0)
        #expect(output.contains("kill switch"))
        #expect(output.contains("not tripped"))
        #expect(output.contains("pid               \(daemon.pid)"), "got \(output)")
    }

    @Test func publishThenAlertsShowsOneLinePerAlert() throws {
        let daemon = try DaemonProcess()
        let (published, text) = try cli(daemon, ["publish", "--severity", "high", "--source", "fs-watch", "--message", "ssh key read", "--details", #"{"path":"/x"}"#])
        #expect(published == 0, "\(text)")
        #expect(text == "published as sequence 1\n")
        let (status, output) = try cli(daemon, ["alerts", "--limit", "5"])
        #expect(status == 0)
        #expect(output.contains("HIGH"))
        #expect(output.contains("fs-watch: ssh key read"))
        #expect(output.contains(#"{"path":"/x"}"#))
    }

    @Test func publishRejectsDetailsThatAreNotAnObject() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try cli(daemon, ["publish", "--severity", "low", "--source", "s", "--message", "m", "--details", "[1]"])
        #expect(status != 0)
        #expect(output.contains("--details must be a JSON object"))
    }

    @Test func auditPrintsAnAlignedTableWithASummaryLine() throws {
        let daemon = try DaemonProcess()
        let (_, output) = try cli(daemon, ["audit"])
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).filter { _ in true }
        #expect(lines.first?.hasPrefix("STATUS") == true)
        #expect(output.contains("socket-permissions"))
        #expect(lines.last(where: { !$0.isEmpty })?.contains("checks in") == true)
        // Columns line up: every check row has its CHECK column where the header has it.
        let column = try #require(lines.first?.range(of: "CHECK")).lowerBound.utf16Offset(in: lines.first!)
        for row in lines.dropFirst().prefix(while: { !$0.isEmpty }) {
            let cell = row.dropFirst(column)
            #expect(cell.first != " ", "misaligned row: \(row)")
        }
    }

    @Test func killThenStatusShowsTheSwitchTripped() throws {
        let daemon = try DaemonProcess()
        let (killed, _) = try cli(daemon, ["kill", "--reason", "test trip"])
        #expect(killed == 0)
        let (_, output) = try cli(daemon, ["status"])
        #expect(output.contains("TRIPPED: test trip"))
    }

    @Test func subscribeStreamsAlertsAsTheyArrive() throws {
        let daemon = try DaemonProcess()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DaemonProcess.cliPath)
        process.arguments = ["subscribe", "--socket", daemon.socketPath]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        _ = try daemon.waitForStatus { $0.subscribers == 1 }
        let publisher = try daemon.connect()
        _ = try publisher.publish(AlertInput(severity: .critical, source: "agent", message: "rm -rf attempted"))
        var collected = ""
        let deadline = Date().addingTimeInterval(10)
        while !collected.contains("rm -rf attempted") && Date() < deadline {
            let data = pipe.fileHandleForReading.availableData
            collected += String(decoding: data, as: UTF8.self)
        }
        process.terminate()
        process.waitUntilExit()
        #expect(collected.contains("CRITICAL"))
        #expect(collected.contains("agent: rm -rf attempted"))
    }

    @Test func reloadPrintsThePolicyVersion() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try cli(daemon, ["reload"])
        #expect(status == 0)
        #expect(output == "policy version 1 in force\n")
    }

    @Test func anErrReplyPrintsItsMessageAndExitsNonZero() throws {
        let daemon = try DaemonProcess()
        let (status, output) = try cli(daemon, ["publish", "--severity", "low", "--source", "", "--message", "m"])
        #expect(status == 1)
        #expect(output == "error: alert.source: must not be empty\n")
    }

    @Test func aMissingDaemonIsReportedWithTheWayToStartIt() throws {
        let daemon = try DaemonProcess()
        let (missing, text) = try run(DaemonProcess.cliPath, ["ping", "--socket", daemon.directory + "/nope.sock"])
        #expect(missing != 0)
        #expect(text.contains("cannot connect to \(daemon.directory)/nope.sock"))
        #expect(text.contains("is secureopsd running? `make run` starts it"))
    }

    /// The client library depends on the JSON and wire layers only (and
    /// the system layer for SO_PEERCRED): a client does not link liburing.
    @Test func theCommandLineClientDoesNotLinkLiburing() throws {
        let (status, output) = try run("/usr/bin/ldd", [DaemonProcess.cliPath])
        #expect(status == 0, "\(output)")
        #expect(output.contains("libc.so"), "ldd printed \(output)")
        #expect(!output.contains("liburing"), "the CLI links liburing:\n\(output)")
        let (_, daemon) = try run("/usr/bin/ldd", [DaemonProcess.daemonPath])
        #expect(daemon.contains("liburing"), "the check itself: the daemon does link it")
    }
}
