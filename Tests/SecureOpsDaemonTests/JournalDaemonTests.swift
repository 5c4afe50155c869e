import Foundation
import Glibc
import SecureOpsClient
import Testing
import TestSupport
import SecureOpsSystem

/// The alert journal through the daemon: what a crash, a restart, a full
/// disk and damage do to alerts a `publish` was answered for.
@Suite("Alert journal", .timeLimit(.minutes(5)))
struct JournalDaemonTests {
    /// Reads the whole stream from `since` 0 up to the daemon's last
    /// sequence: sequences in the order they came.
    private static func replay(_ daemon: DaemonProcess) throws -> (epoch: String?, sequences: [UInt64], messages: [String]) {
        let connection = try daemon.connect()
        let status = try connection.status()
        _ = try connection.subscribe(since: 0)
        var sequences: [UInt64] = []
        var messages: [String] = []
        while sequences.last ?? 0 < status.lastSequence {
            guard let push = try connection.nextPush(timeout: 10) else { throw TestFailure("the replay ended at \(sequences.last ?? 0) of \(status.lastSequence)") }
            guard case .alert(let alert) = push else { throw TestFailure("unexpected \(push) in the replay") }
            sequences.append(alert.sequence)
            messages.append(alert.message)
        }
        connection.close()
        return (status.epoch, sequences, messages)
    }

    @Test func answeredAlertsSurviveAKill9AndReplayAcrossTheRestartWithNoGapOrDuplicate() throws {
        let daemon = try DaemonProcess()
        let epoch = try daemon.connect().status().epoch
        let publisher = BackgroundPublisher(socket: daemon.socketPath, prefix: "a")
        #expect(eventually { publisher.sequences.count >= 500 })
        try daemon.stop(signal: SIGKILL)
        let answered = publisher.sequences
        try daemon.restart()

        let (restartedEpoch, sequences, _) = try replay(daemon)
        #expect(restartedEpoch == epoch, "the stream goes on across the restart")
        #expect(sequences == Array(1...UInt64(sequences.count)), "no gap, no duplicate")
        #expect(Set(answered).isSubset(of: Set(sequences)), "every answered alert is in the journal")
        #expect(daemon.log.contains("journal: stream \(epoch ?? "?") continues at sequence \(sequences.count + 1)"), "\(daemon.log)")

        // New alerts continue the numbering.
        let next = try daemon.connect().publish(AlertInput(severity: .low, source: "t", message: "after"))
        #expect(next == UInt64(sequences.count + 1))
    }

    /// Crashes at random moments while alerts are published: in every
    /// trial, every answered alert is there after the restart, numbered
    /// without gaps. 200 trials take half a minute: on a thread of their
    /// own (`onOwnThread`), not one the other tests need.
    @Test func killedAtRandomMomentsTheDaemonNeverLosesAnAnsweredAlert() async throws {
        try await onOwnThread { try Self.crashTrials(200) }
    }

    private static func crashTrials(_ trials: Int) throws {
        let daemon = try DaemonProcess()
        var generator = SystemRandomNumberGenerator()
        var answeredSoFar: Set<UInt64> = []
        for trial in 0..<trials {
            let publisher = BackgroundPublisher(socket: daemon.socketPath, prefix: "t\(trial)-")
            usleep(UInt32.random(in: 1_000...60_000, using: &generator))
            try daemon.stop(signal: SIGKILL)
            answeredSoFar.formUnion(publisher.sequences)
            try daemon.restart()
            let status = try daemon.connect().status()
            #expect(answeredSoFar.max().map { $0 <= status.lastSequence } ?? true, "trial \(trial): answered up to \(answeredSoFar.max() ?? 0), journal has \(status.lastSequence)")
        }
        let (_, sequences, _) = try replay(daemon)
        #expect(sequences == Array(1...UInt64(sequences.count)))
        #expect(answeredSoFar.isSubset(of: Set(sequences)))
    }

    private func replay(_ daemon: DaemonProcess) throws -> (epoch: String?, sequences: [UInt64], messages: [String]) {
        try Self.replay(daemon)
    }

    @Test func alertsAndSubscribeSinceReachBackAcrossAGracefulRestart() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        for index in 1...5 { _ = try connection.publish(AlertInput(severity: .info, source: "t", message: "m\(index)")) }
        try daemon.restart()
        let after = try daemon.connect()
        #expect(try after.alerts(limit: 3).map(\.message) == ["m3", "m4", "m5"])
        _ = try after.subscribe(since: 2)
        var replayed: [String] = []
        for _ in 0..<3 {
            guard case .alert(let alert)? = try after.nextPush(timeout: 10) else { break }
            replayed.append(alert.message)
        }
        #expect(replayed == ["m3", "m4", "m5"])
    }

    /// A small tmpfs as the state directory, filled up: alerts still fan
    /// out, their replies say `"persisted":false`, `status` and one
    /// critical alert say why; once space returns, writing resumes.
    @Test func aFullDiskIsReportedAndAlertsStillReachSubscribers() throws {
        let scratch = try ScratchDirectory(prefix: "so-fulld")
        try #require(mount("tmpfs", scratch.path, "tmpfs", 0, "size=512k,mode=0700") == 0, "mounting a tmpfs needs root (errno \(errno))")
        defer { umount2(scratch.path, Int32(MNT_DETACH)) }
        let daemon = try DaemonProcess(extraArguments: ["--journal-sync", "always"], directory: scratch.path)
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let publisher = try daemon.connect()
        #expect(try publisher.publish(AlertInput(severity: .low, source: "t", message: "fits")) == 1)

        let filler = open(scratch.path + "/filler", O_WRONLY | O_CREAT, 0o600)
        let block = [UInt8](repeating: 0xAB, count: 4096)
        while block.withUnsafeBytes({ write(filler, $0.baseAddress, $0.count) }) > 0 {}
        close(filler)

        // The segment's last page has room left: publish until a reply
        // says the alert is not on disk.
        var notPersisted: String?
        for index in 0..<100 where notPersisted == nil {
            let message = "alert \(index) " + String(repeating: "x", count: 1000)
            try publisher.send(.publish(AlertInput(severity: .high, source: "t", message: message)))
            guard case .ok(let reply) = try publisher.reply() else { Issue.record("publish failed"); return }
            if reply["persisted"] == .bool(false) { notPersisted = message }
        }
        let lost = try #require(notPersisted, "no reply said persisted:false")
        var seen: [String] = []
        while !(seen.contains(lost) && seen.contains(where: { $0.hasPrefix("journal writes are failing") })),
              case .alert(let alert)? = try subscriber.nextPush(timeout: 10) {
            seen.append(alert.message)
        }
        #expect(seen.contains(lost), "it still fanned out")
        #expect(seen.contains { $0.hasPrefix("journal writes are failing") && $0.contains("No space left on device") }, "\(seen.filter { !$0.hasPrefix("alert ") })")
        let failing = try #require(try publisher.status().journal)
        #expect(!failing.healthy && failing.lastError?.contains("No space left on device") == true && failing.failedAlerts >= 1)

        unlink(scratch.path + "/filler")
        try publisher.send(.publish(AlertInput(severity: .low, source: "t", message: "fits again")))
        guard case .ok(let again) = try publisher.reply() else { Issue.record("publish failed"); return }
        #expect(again["persisted"] == nil, "\(again)")
        #expect(try daemon.waitForStatus { $0.journal?.healthy == true }.journal?.lastError == nil)
        #expect(daemon.log.contains("journal writes work again"))

        // What a failed write left in the segment was cut off: the journal
        // opens clean, with the alerts that were on disk, in order; the
        // ones that were not are a gap a replay reports as skipped.
        try daemon.restart()
        #expect(!daemon.log.contains("damaged"), "\(daemon.log)")
        let reader = try daemon.connect()
        let last = try reader.status().lastSequence
        _ = try reader.subscribe(since: 0)
        var sequences: [UInt64] = []
        var messages: [String] = []
        var skipped = 0
        while (sequences.last ?? 0) < last, let push = try reader.nextPush(timeout: 10) {
            switch push {
            case .alert(let alert):
                sequences.append(alert.sequence)
                messages.append(alert.message)
            case .err(_, let count?, _):
                skipped += Int(count)
            default:
                Issue.record("unexpected \(push) in the replay")
            }
        }
        #expect(messages.first == "fits" && messages.contains("fits again"), "\(messages.filter { !$0.hasPrefix("alert ") })")
        #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
        #expect(skipped >= failing.failedAlerts, "the alerts not on disk are a gap: \(skipped) skipped")
    }

    /// On io_uring the loop writes the journal through its own ring; on
    /// epoll, or when asked, a writer thread does. `status` says which.
    @Test func theLoopWritesTheJournalThroughItsRingOnIOUringAndAThreadOnEpoll() throws {
        let daemon = try DaemonProcess()
        let status = try daemon.connect().status()
        let onIOUring = try #require(status.ioBackend).hasPrefix("io_uring")
        #expect(status.journal?.writer == (onIOUring ? "io_uring" : "thread"))
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/task").map { task in
            (try? String(contentsOfFile: "/proc/\(daemon.pid)/task/\(task)/comm", encoding: .utf8)) ?? ""
        }
        #expect(threads.contains { $0.hasPrefix("journal-writer") } == !onIOUring, "\(threads)")

        let threaded = try DaemonProcess(extraArguments: ["--journal-writer", "thread"])
        #expect(try threaded.connect().status().journal?.writer == "thread")
    }

    /// Segments of 4 KiB: a new one every few alerts, made while alerts
    /// keep coming (on io_uring, off the loop while the next writes wait).
    /// Killed mid-stream, the journal has every answered alert, in order.
    @Test func manySmallSegmentsKeepEveryAnsweredAlertThroughAKill9() throws {
        let daemon = try DaemonProcess(extraArguments: ["--journal-segment-bytes", "4096"])
        let publishers = (0..<3).map { BackgroundPublisher(socket: daemon.socketPath, prefix: "p\($0)-") }
        #expect(eventually(within: 60) { publishers.reduce(0) { $0 + $1.sequences.count } >= 3000 })
        try daemon.stop(signal: SIGKILL)
        let answered = publishers.reduce(into: Set<UInt64>()) { $0.formUnion($1.sequences) }
        try daemon.restart()

        let journal = try #require(try daemon.connect().status().journal)
        #expect(journal.segments > 50, "\(journal)")
        let (_, sequences, messages) = try replay(daemon)
        #expect(sequences == Array(1...UInt64(sequences.count)), "no gap, no duplicate")
        #expect(answered.isSubset(of: Set(sequences)))
        for prefix in ["p0-", "p1-", "p2-"] {
            let indices = messages.filter { $0.hasPrefix(prefix) }.compactMap { Int($0.dropFirst(prefix.count)) }
            #expect(indices == Array(0..<indices.count), "each publisher's alerts in its order")
        }
    }

    @Test func aDamagedJournalIsMovedAsideAndANewStreamBeginsWithACriticalAlert() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        let oldEpoch = try connection.status().epoch
        for index in 1...20 { _ = try connection.publish(AlertInput(severity: .info, source: "t", message: "m\(index)")) }
        connection.close()
        try daemon.stop()
        let journal = daemon.stateDirectory + "/journal"
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: journal).first { $0.hasSuffix(".journal") })
        // A byte in the middle of the segment, well before its end.
        let fd = open(journal + "/" + segment, O_RDWR)
        var byte: UInt8 = 0
        pread(fd, &byte, 1, 200)
        byte ^= 0xFF
        pwrite(fd, &byte, 1, 200)
        close(fd)

        try daemon.restart()
        let status = try daemon.connect().status()
        #expect(status.epoch != oldEpoch)
        let alerts = try daemon.connect().alerts(limit: 10)
        #expect(alerts.count == 1 && alerts[0].severity == .critical && alerts[0].message.hasPrefix("journal damaged: segment \(segment) is damaged at byte"), "\(alerts)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: journal).filter { $0.hasPrefix("damaged-") }
        #expect(kept.count == 1)
        #expect(FileManager.default.fileExists(atPath: journal + "/" + kept[0] + "/" + segment), "nothing is deleted")
        #expect(daemon.log.contains("journal: segment \(segment) is damaged"))
    }

    @Test func aTornTailIsCutAndSaidAndTheAlertsBeforeItStay() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        for index in 1...3 { _ = try connection.publish(AlertInput(severity: .info, source: "t", message: "m\(index)")) }
        connection.close()
        try daemon.stop(signal: SIGKILL)
        let journal = daemon.stateDirectory + "/journal"
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: journal).first { $0.hasSuffix(".journal") })
        let handle = try #require(FileHandle(forWritingAtPath: journal + "/" + segment))
        handle.seekToEndOfFile()
        handle.write(Data([0x40, 0, 0, 0, 0xDE, 0xAD]))
        handle.closeFile()
        try daemon.restart()
        #expect(try daemon.connect().alerts().map(\.message) == ["m1", "m2", "m3"])
        #expect(daemon.log.contains("journal: cut 6 bytes of an interrupted write"), "\(daemon.log)")
    }

    @Test func withoutTheJournalARestartBeginsANewStream() throws {
        let daemon = try DaemonProcess(extraArguments: ["--no-journal"])
        let first = try daemon.connect()
        _ = try first.publish(AlertInput(severity: .info, source: "t", message: "m"))
        let epoch = try first.status().epoch
        #expect(try first.status().journal == nil)
        try daemon.restart()
        let status = try daemon.connect().status()
        #expect(status.epoch != epoch && status.lastSequence == 0)
    }
}

/// Subscribers behind what memory retains are served from the journal.
@Suite("Alert journal: replay from disk", .timeLimit(.minutes(3)))
struct JournalReplayTests {
    /// The ring keeps 100 alerts; the journal has 5,000. A subscriber
    /// asking for everything since 0 gets all 5,000 in order, no lag notice,
    /// then live alerts with no gap or duplicate while publishing goes on.
    @Test func aSubscriberOlderThanTheRingIsServedFromTheJournalThenLive() throws {
        let daemon = try DaemonProcess(policy: #"{"version": 1, "limits": {"retainedAlerts": 100}}"#)
        try publishInBulk(socket: daemon.socketPath, count: 5000)
        let publisher = Thread { try? publishInBulk(socket: daemon.socketPath, count: 2000, window: 8) }
        publisher.start()
        let swarm = try FanoutSwarm(socket: daemon.socketPath, subscribers: 20, expectedAlerts: 7000, since: 0)
        try swarm.waitUntilSubscribed()
        let summary = try swarm.finish()
        #expect(summary.received == 20 * 7000)
        #expect(summary.lost == 0 && summary.duplicated == 0 && summary.reordered == 0)
        #expect(summary.lagNotices == 0 && summary.skipped == 0)
        #expect(try daemon.connect().status().lagEvents == 0)
    }

    /// After a restart the ring holds the journal's newest alerts; `since`
    /// further back reads the rest from disk.
    @Test func afterARestartSinceReachesBackBeyondTheRing() throws {
        let daemon = try DaemonProcess(policy: #"{"version": 1, "limits": {"retainedAlerts": 50}}"#)
        try publishInBulk(socket: daemon.socketPath, count: 3000)
        try daemon.restart()
        let connection = try daemon.connect()
        #expect(try connection.status().alertsRetained == 50)
        _ = try connection.subscribe(since: 10)
        var sequences: [UInt64] = []
        while sequences.count < 2990, case .alert(let alert)? = try connection.nextPush(timeout: 10) {
            sequences.append(alert.sequence)
        }
        #expect(sequences == Array(11...3000))
    }
}
