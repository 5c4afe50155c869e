import Foundation
import Glibc
import Testing
import SecureOpsClient
import SecureOpsEngine

/// `secureops-bench` against real daemons: tiny runs whose JSON must add up
/// (every alert delivered once, every request answered), and agree with the
/// daemon's own counters. Performance itself is measured by
/// scripts/compare.sh, never here.
@Suite("secureops-bench", .timeLimit(.minutes(5)))
struct BenchToolTests {
    static var benchPath: String { DaemonProcess.binaryDirectory + "/secureops-bench" }

    /// Runs the tool and parses the JSON object it prints. Output goes to a
    /// file, not a pipe: a long-lived process another test spawns at the same
    /// moment may inherit a pipe's write end and hold its EOF back.
    func bench(_ arguments: [String]) throws -> (status: Int32, json: [String: Any], output: String) {
        let outputPath = NSTemporaryDirectory() + "secureops-bench-test-\(UUID().uuidString).out"
        FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.benchPath)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }).map(String.init) ?? ""
        let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        return (process.terminationStatus, json, output)
    }

    func number(_ json: [String: Any], _ key: String) -> Double {
        (json[key] as? NSNumber)?.doubleValue ?? .nan
    }

    @Test(arguments: ["io_uring", "epoll"])
    func fanoutDeliversEveryAlertToEverySubscriberOnceAndTheCountsAddUp(receiver: String) throws {
        let daemon = try DaemonProcess()
        let (status, json, output) = try bench([
            "fanout", "--socket", daemon.socketPath, "--subscribers", "7", "--alerts", "300",
            "--publishers", "2", "--window", "16", "--size", "300", "--receiver", receiver, "--json", "--no-progress",
        ])
        #expect(status == 0, "\(output)")
        #expect(json["receiver"] as? String == receiver)
        #expect(number(json, "published") == 300)
        #expect(number(json, "deliveries") == 7 * 300)
        #expect(number(json, "expectedDeliveries") == 7 * 300)
        #expect(number(json, "lost") == 0)
        #expect(number(json, "duplicated") == 0)
        #expect(number(json, "reordered") == 0)
        #expect(number(json, "unexpectedFrames") == 0)
        #expect(number(json, "deliveries") + number(json, "lost") + number(json, "laggedSkipped") == number(json, "expectedDeliveries"))
        // Every delivery carried a send time the tool could read back.
        #expect(number(json, "latencySamples") == 7 * 300)
        let percentiles = ["p50Us", "p90Us", "p99Us", "p999Us", "maxUs"].map { number(json, $0) }
        #expect(percentiles.allSatisfy { $0 > 0 }, "\(percentiles)")
        #expect(percentiles == percentiles.sorted(), "percentiles must not decrease: \(percentiles)")
        #expect(number(json, "deliveriesPerSec") > 0)
        #expect(number(json, "requestsPerSec") > 0)
        // The frames are as large as asked (give or take the sequence's digits).
        #expect(abs(number(json, "frameBytes") - 300) < 8, "frameBytes \(number(json, "frameBytes"))")
        // The tool found the daemon through SO_PEERCRED and read its memory.
        #expect(number(json, "serverPid") == Double(daemon.pid))
        #expect(number(json, "serverRssSubscribedBytes") > 0)

        // The daemon's own counters agree: 300 alerts, all from this run.
        let connection = try daemon.connect()
        let daemonStatus = try connection.status()
        #expect(daemonStatus.alertsPublished == 300)
        #expect(daemonStatus.lastSequence == 300)
    }

    @Test func rpcAnswersEveryRequestAndCountsEachOnce() throws {
        let daemon = try DaemonProcess()
        for request in ["ping", "status", "publish"] {
            let (status, json, output) = try bench([
                "rpc", "--socket", daemon.socketPath, "--connections", "3", "--requests", "300",
                "--pipeline", "4", "--request", request, "--json", "--no-progress",
            ])
            #expect(status == 0, "\(request): \(output)")
            #expect(number(json, "requests") == 300, "\(request)")
            #expect(number(json, "errors") == 0, "\(request)")
            #expect(number(json, "lost") == 0, "\(request)")
            #expect(number(json, "latencySamples") == 300, "\(request)")
            #expect(number(json, "requestsPerSec") > 0, "\(request)")
            #expect(number(json, "p50Us") <= number(json, "p99Us"))
        }
        let daemonStatus = try daemon.connect().status()
        #expect(daemonStatus.alertsPublished == 300, "the publish run published exactly 300 alerts")
    }

    @Test func withoutSocketTheToolStartsItsOwnDaemonAndStopsItAfterwards() throws {
        let (status, json, output) = try bench([
            "connect", "--daemon", DaemonProcess.daemonPath, "--connections", "50", "--json", "--no-progress",
        ])
        #expect(status == 0, "\(output)")
        #expect(number(json, "subscribed") == 50)
        #expect(number(json, "connectionsPerSec") > 0)
        let pid = Int32(number(json, "serverPid"))
        #expect(pid > 0)
        // Stopped and reaped: the pid no longer exists.
        #expect(kill(pid, 0) == -1 && errno == ESRCH, "daemon \(pid) still running")
    }

    @Test func aServerThatLosesDuplicatesAndReordersAlertsIsCaughtAndFailsTheRun() throws {
        // Fixtures/lossy-server.c drops alert 3, sends alert 6 twice and
        // alert 9 after alert 10, to every subscriber.
        let server = try compileFixture("lossy-server")
        var template = Array("/tmp/secureops-lossy-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed") }
        let directory = String(cString: template)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socketPath = directory + "/lossy.sock"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = [socketPath]
        try process.run()
        defer { killAndWait(process) }
        for _ in 0..<250 where !FileManager.default.fileExists(atPath: socketPath) { usleep(20_000) }

        let (status, json, output) = try bench([
            "fanout", "--socket", socketPath, "--subscribers", "4", "--alerts", "20", "--drain-timeout", "1", "--json", "--no-progress",
        ])
        #expect(status == 1, "a lossy run must fail: \(output)")
        #expect(number(json, "lost") == 4)
        #expect(number(json, "duplicated") == 4)
        #expect(number(json, "reordered") == 4)
        #expect(number(json, "deliveries") == 4 * 20)
    }

    @Test(arguments: ["io_uring", "epoll"])
    func alertsLargerThanOneReadAreJoinedAcrossReads(receiver: String) throws {
        // 100 KB frames: larger than one of the io_uring receiver's 64 KiB
        // buffers, so there every alert arrives in at least two pieces. (The
        // epoll receiver reads up to 1 MiB at once: pieces there depend on
        // timing, so only the counts are checked.)
        let daemon = try DaemonProcess()
        let (status, json, output) = try bench([
            "fanout", "--socket", daemon.socketPath, "--subscribers", "3", "--alerts", "40",
            "--size", "100000", "--receiver", receiver, "--json", "--no-progress",
        ])
        #expect(status == 0, "\(output)")
        #expect(number(json, "deliveries") == 3 * 40)
        #expect(number(json, "latencySamples") == 3 * 40)
        #expect(number(json, "unexpectedFrames") == 0)
        if receiver == "io_uring" {
            // No read holds more than 64 KiB, so 12 MB took at least 183
            // reads for 120 alerts: most alerts were joined from pieces.
            #expect(number(json, "recvCalls") > 3 * 40, "more reads than alerts")
        }
    }

    /// DESIGN.md invariant 7 in the tool's own receiver: with one shared
    /// buffer, most multishot receives end with -ENOBUFS; each is re-armed
    /// and nothing is lost.
    @Test func receivesThatFindNoBufferAreReArmedAndLoseNothing() throws {
        let daemon = try DaemonProcess()
        let (status, json, output) = try bench([
            "fanout", "--socket", daemon.socketPath, "--subscribers", "50", "--alerts", "300", "--size", "4000",
            "--receive-buffers", "1", "--json", "--no-progress",
        ])
        #expect(status == 0, "\(output)")
        #expect(number(json, "starvedReceives") > 0, "one buffer for 50 sockets must run dry")
        #expect(number(json, "deliveries") == 50 * 300)
        #expect(number(json, "lost") == 0 && number(json, "unexpectedFrames") == 0)
    }

    @Test func theBacklogBoundKeepsPublishersNearTheReaders() throws {
        // Bounded to 32 alerts ahead of the average subscriber (with 64 in
        // flight allowed by acknowledgements), the publisher must wait for
        // deliveries before each batch.
        let daemon = try DaemonProcess()
        let (status, json, output) = try bench([
            "fanout", "--socket", daemon.socketPath, "--subscribers", "20", "--alerts", "2000",
            "--backlog", "32", "--json", "--no-progress",
        ])
        #expect(status == 0, "\(output)")
        #expect(number(json, "backlog") == 32)
        #expect(number(json, "deliveries") == 20 * 2000)
        #expect(number(json, "maxBacklog") > 0)
        #expect(number(json, "maxBacklog") <= 32, "\(output)")
        let (_, unbounded, unboundedOutput) = try bench([
            "fanout", "--socket", daemon.socketPath, "--subscribers", "20", "--alerts", "10", "--backlog", "0", "--json", "--no-progress",
        ])
        #expect(unbounded["backlog"] is NSNull, "\(unboundedOutput)")
    }

    @Test func aLaggingSubscriberIsCountedFromTheDaemonsNoticeNotAsLoss() throws {
        // A ring of 4 KiB (about 16 alerts), 512 publishes in flight and no
        // bound on how far publishers run ahead: subscribers fall behind and
        // the daemon skips them ahead.
        // Without the journal, which would serve the laggard from disk.
        let daemon = try DaemonProcess(extraArguments: ["--retained-bytes", "4096", "--no-journal"])
        let (status, json, output) = try bench([
            "fanout", "--socket", daemon.socketPath, "--subscribers", "50", "--alerts", "5000", "--window", "512",
            "--backlog", "0", "--json", "--no-progress",
        ])
        #expect(status == 0, "announced lag is not a failure: \(output)")
        #expect(number(json, "lagEvents") > 0, "expected lag with a 4 KiB ring: \(output)")
        #expect(number(json, "lagNoticeMismatches") == 0, "every notice's count matches the gap it explains")
        #expect(number(json, "lost") == 0)
        #expect(number(json, "deliveries") + number(json, "laggedSkipped") == number(json, "expectedDeliveries"))
    }

    @Test func anUnreachableSocketIsASetupErrorThatSaysWhatToDo() throws {
        let (status, _, output) = try bench(["rpc", "--socket", "/tmp/secureops-no-such-dir/none.sock", "--requests", "1"])
        #expect(status == 2)
        #expect(output.contains("nothing answers on /tmp/secureops-no-such-dir/none.sock"), "\(output)")
    }

    @Test func aFrameSizeTooSmallForAnAlertIsRefusedWithTheMinimum() throws {
        let (status, _, output) = try bench(["fanout", "--size", "10", "--socket", "/unused.sock"])
        #expect(status != 0)
        #expect(output.contains("--size must be between"), "\(output)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server"), "redis-server is not installed"))
    func theSameFanoutAndPingWorkloadsRunAgainstRedis() throws {
        let (status, json, output) = try bench([
            "fanout", "--target", "redis", "--subscribers", "5", "--alerts", "200", "--publishers", "3", "--json", "--no-progress",
        ])
        #expect(status == 0, "\(output)")
        #expect(number(json, "deliveries") == 5 * 200)
        #expect(number(json, "lost") == 0)
        #expect(number(json, "reordered") == 0)
        #expect(number(json, "latencySamples") == 5 * 200)
        let (pingStatus, ping, pingOutput) = try bench([
            "rpc", "--target", "redis", "--connections", "2", "--requests", "100", "--pipeline", "16", "--json", "--no-progress",
        ])
        #expect(pingStatus == 0, "\(pingOutput)")
        #expect(number(ping, "requests") == 112, "7 batches of 16 on 2 connections")
        #expect(number(ping, "errors") == 0)
    }
}
