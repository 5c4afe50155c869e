import Glibc
import SecureOpsSystem
import Testing
import TestSupport
@testable import SecureOpsEngine

/// The loop writing the journal itself, as on io_uring (`JournalRingWriter`),
/// with the fake kernel completing each write and sync when the test says:
/// batching per turn, short and failed writes, syncs per policy, and new
/// segments made off the loop.
@Suite("Journal written by the loop (fake kernel)")
struct JournalRingWriterTests {
    /// A fake server with a journal in a scratch directory.
    final class Fixture {
        let scratch: ScratchDirectory
        let directory: OpenedDirectory
        let configuration: JournalConfiguration
        let journal: Journal
        let server: FakeServer

        init(configure: (inout JournalConfiguration) -> Void = { _ in }) throws {
            scratch = try ScratchDirectory(prefix: "so-ring-journal")
            directory = try OpenedDirectory.open(scratch.path)
            var configuration = JournalConfiguration()
            configure(&configuration)
            self.configuration = configuration
            journal = try Journal.open(in: directory, configuration: configuration) { 0x5EC0_0000_0000_0001 }.0
            let journal = self.journal
            server = try FakeServer { $0.journal = journal }
        }

        var fake: FakeBackend { server.fake }
        var status: JournalStatus { server.loop.counters.snapshot(journal: journal).journal! }

        /// The file operations asked for since the last call.
        func fileRequests() -> [FakeBackend.Request] {
            fake.takeRequests().filter {
                switch $0 {
                case .writeFile, .syncFile: true
                default: false
                }
            }
        }

        /// What a fresh open of the directory finds.
        func reopened() throws -> (records: [JournalRecord], recovery: JournalRecovery) {
            let (journal, recovery) = try Journal.open(in: directory, configuration: configuration) { 99 }
            return (try journal.records(from: 1, maxCount: 100), recovery)
        }

        func size(of segment: String) -> Int {
            var info = stat()
            return stat(directory.pathOf(segment), &info) == 0 ? Int(info.st_size) : -1
        }
    }

    private static let header = 32

    @Test func aTurnsFramesGoOutInOneWriteAndFramesArrivingMeanwhileInTheNext() throws {
        let fixture = try Fixture()
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.publish("b")
        server.turn()
        let first = fixture.fileRequests()
        #expect(first.count == 1)
        guard case .writeFile(let offset, let count)? = first.first else { return }
        #expect(offset == Self.header)

        server.publish("c")
        server.publish("d")
        server.publish("e")
        server.turn()
        #expect(fixture.fileRequests().isEmpty, "one write in flight at a time")
        #expect(fixture.status.through == 0, "nothing reported before its write completes")

        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 2)
        server.turn()
        #expect(fixture.fileRequests() == [.writeFile(offset: Self.header + count, count: fake.fileWriteInFlight?.count ?? -1)],
                "c, d and e together")
        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 5)
        #expect(try fixture.journal.records(from: 1, maxCount: 10).map(\.sequence) == [1, 2, 3, 4, 5])
    }

    /// docs/DESIGN.md invariant 13: a subscriber sees only frames the
    /// journal has, so a crash never takes back one it saw.
    @Test func aSubscriberGetsAFrameOnlyOnceItsWriteHasCompleted() throws {
        let fixture = try Fixture()
        let (server, fake) = (fixture.server, fixture.fake)
        let (id, _) = try server.connect()
        fake.receive(id, FakeServer.request("watch"))
        server.turn(times: 2)
        fake.completeSend(id)
        server.turn()
        let frame = server.publish("a")
        server.turn(times: 3)
        #expect(fake.fileWriteInFlight != nil)
        #expect(fake.sendInFlight(id) == nil && !server.sent(to: id).contains(frame), "not before the journal has it")

        fake.completeFileWrite()
        server.turn(times: 2)
        #expect(fake.sendInFlight(id) == frame)
    }

    @Test func aShortWriteIsContinuedWhereItStopped() throws {
        let fixture = try Fixture()
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.publish("b")
        server.turn()
        guard case .writeFile(_, let count)? = fixture.fileRequests().first else { Issue.record("no write"); return }

        fake.completeFileWrite(bytes: 10)
        server.turn()
        server.turn()
        #expect(fixture.fileRequests() == [.writeFile(offset: Self.header + 10, count: count - 10)])
        #expect(fixture.status.through == 0)
        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 2 && fixture.status.health == .healthy)

        let (records, recovery) = try fixture.reopened()
        #expect(records.map(\.sequence) == [1, 2])
        #expect(recovery.tornTailBytesCut == 0 && recovery.damage == nil)
    }

    /// Out of space after part of a write: the part is cut off (on the
    /// maintenance queue), its frames are reported not persisted, and the
    /// next write starts where the failed one began.
    @Test func aFailedWriteIsCutBackItsFramesReportedAndTheNextWriteStartsWhereItBegan() throws {
        let fixture = try Fixture()
        let (server, fake) = (fixture.server, fixture.fake)
        let segment = "00000000000000000001.journal"
        server.publish("a")
        server.turn()
        fake.completeFileWrite(bytes: 10)
        server.turn()
        server.turn()
        fake.failFileWrite(errno: ENOSPC)
        server.turn()
        #expect(fixture.status.through == 1 && fixture.status.failedRecords == 1)
        guard case .failing(let why) = fixture.status.health else { Issue.record("still healthy"); return }
        #expect(why.contains("No space left on device") && why.contains(segment), "\(why)")
        #expect(server.turn { fixture.size(of: segment) == Self.header }, "the partial record is cut off")

        _ = fixture.fileRequests()
        server.publish("b")
        #expect(server.turn { fake.fileWriteInFlight != nil })
        #expect(fake.fileWriteInFlight?.offset == Self.header)
        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 2 && fixture.status.health == .healthy)

        let (records, recovery) = try fixture.reopened()
        #expect(records.map(\.sequence) == [2], "a is a gap, b is whole")
        #expect(recovery.tornTailBytesCut == 0 && recovery.damage == nil)
    }

    @Test func underAlwaysAFrameIsReportedOnlyOnceItsSyncCompletes() throws {
        let fixture = try Fixture { $0.syncPolicy = .always }
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.turn()
        fake.completeFileWrite()
        server.turn()
        #expect(fake.fileSyncInFlight)
        #expect(fixture.status.through == 0, "written is not yet persisted under always")
        fake.completeFileSync()
        server.turn()
        #expect(fixture.status.through == 1 && fixture.status.failedRecords == 0)

        server.publish("b")
        server.turn()
        fake.completeFileWrite()
        server.turn()
        fake.completeFileSync(errno: EIO)
        server.turn()
        #expect(fixture.status.through == 2 && fixture.status.failedRecords == 1, "b is not known to be on the disk")
        guard case .failing(let why) = fixture.status.health else { Issue.record("still healthy"); return }
        #expect(why.contains("fdatasync") && why.contains("Input/output error"), "\(why)")
    }

    /// Under `always` the sync is linked to the write in the kernel; a
    /// short write cancels it, and the rest goes out with a new one.
    @Test func underAlwaysTheSyncIsLinkedToTheWriteAndAShortWriteCancelsIt() throws {
        let fixture = try Fixture { $0.syncPolicy = .always }
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.turn()
        let first = fixture.fileRequests()
        guard case .writeFile(_, let count)? = first.first else { Issue.record("no write: \(first)"); return }
        #expect(first == [.writeFile(offset: Self.header, count: count), .syncFile], "one submission, write then sync")

        fake.completeFileWrite(bytes: 10)
        server.turn() // the write's completion; the cancelled sync is queued
        #expect(fixture.fileRequests().isEmpty, "nothing new until the cancelled sync is in")
        server.turn() // the cancellation
        #expect(fixture.fileRequests() == [.writeFile(offset: Self.header + 10, count: count - 10), .syncFile])
        #expect(fixture.status.through == 0)
        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 0, "written, not yet synced")
        fake.completeFileSync()
        server.turn()
        #expect(fixture.status.through == 1 && fixture.status.health == .healthy)
        #expect(try fixture.reopened().records.map(\.sequence) == [1])
    }

    @Test func underIntervalAFrameIsReportedWhenWrittenAndSyncedOnceTheIntervalIsOver() throws {
        let fixture = try Fixture {
            $0.syncPolicy = .interval
            $0.syncIntervalMilliseconds = 1
        }
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.turn()
        usleep(2_000)
        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 1, "reported once written")
        #expect(fake.fileSyncInFlight, "the interval is over: a sync follows the write")
        fake.completeFileSync()
        server.turn()
        #expect(fixture.status.health == .healthy)

        // Nothing written since: no sync is owed, however long it is.
        usleep(2_000)
        server.turn()
        #expect(!fake.fileSyncInFlight && fake.fileWriteInFlight == nil)
    }

    /// A sync falls due while a write is in flight: the loop waits for the
    /// write's completion as usual, it does not spin until it comes.
    @Test func anOverdueSyncBehindAWriteInFlightDoesNotMakeTheLoopSpin() throws {
        let fixture = try Fixture {
            $0.syncPolicy = .interval
            $0.syncIntervalMilliseconds = 1
        }
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.turn()
        fake.completeFileWrite()
        server.turn()
        server.publish("b")
        server.turn()
        #expect(fake.fileWriteInFlight != nil || fake.fileSyncInFlight)
        usleep(2_000)
        server.turn()
        #expect(server.loop.journalWaitBudget > 1_000_000, "the loop may sleep while the kernel works")
    }

    /// A segment past its size: the next frames wait while a new segment
    /// is made on the maintenance queue, then go out at its start.
    @Test func aFullSegmentIsReplacedOffTheLoopWhileFramesWait() throws {
        let fixture = try Fixture { $0.segmentBytes = 64 }
        let (server, fake) = (fixture.server, fixture.fake)
        server.publish("a")
        server.turn()
        fake.completeFileWrite()
        server.turn()
        _ = fixture.fileRequests()

        server.publish("b")
        server.turn()
        #expect(fake.fileWriteInFlight == nil, "no write into a full segment")
        #expect(server.turn { fake.fileWriteInFlight != nil })
        #expect(fake.fileWriteInFlight?.offset == Self.header, "at the start of the new segment")
        fake.completeFileWrite()
        server.turn()
        #expect(fixture.status.through == 2)
        #expect(fixture.journal.statistics.segments == 2)
        let (records, recovery) = try fixture.reopened()
        #expect(records.map(\.sequence) == [1, 2] && recovery.damage == nil)
    }
}
