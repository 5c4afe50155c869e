import Foundation
import Glibc
import SecureOpsSystem
import Testing
import TestSupport
@testable import SecureOpsJournal

@Suite("Journal: the writer thread", .timeLimit(.minutes(2)))
struct JournalWriterTests {
    @Test(arguments: [JournalSyncPolicy.always, .interval, .none])
    func everyRecordIsReportedInOrderAndReadableWhenReported(policy: JournalSyncPolicy) throws {
        let fixture = try JournalFixture { $0.syncPolicy = policy; $0.segmentBytes = 4096 }
        let (journal, _) = try fixture.open()
        let reports = Locked<[JournalProgress]>([])
        let readable = Locked<[Bool]>([])
        let writer = try JournalWriter(journal: journal) { progress in
            // Reported means written: a reader finds the records already.
            let found = (try? journal.records(from: progress.through, maxCount: 1).first?.sequence) == progress.through
            readable.withLock { $0.append(found || progress.through == 0) }
            reports.withLock { $0.append(progress) }
        }
        for first in stride(from: 1, through: 991, by: 10) {
            writer.submit(batch(from: UInt64(first), count: 10))
        }
        #expect(eventually { reports.withLock { $0.last?.through == 1000 } })
        writer.stop()
        let throughs = reports.withLock { $0.map(\.through).filter { $0 > 0 } }
        #expect(throughs == throughs.sorted())
        #expect(reports.withLock { $0.allSatisfy { $0.failed.isEmpty && $0.health == .healthy } })
        #expect(readable.withLock { $0.allSatisfy { $0 } })
        let (reopened, recovery) = try fixture.open()
        #expect(recovery.tornTailBytesCut == 0 && reopened.nextSequence == 1001)
    }

    @Test func stopWritesWhatWasQueuedBeforeItReturns() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        let writer = try JournalWriter(journal: journal) { _ in }
        for first in stride(from: 1, through: 4991, by: 10) {
            writer.submit(batch(from: UInt64(first), count: 10))
        }
        writer.stop()
        #expect(journal.nextSequence == 5001)
    }

    /// A real full disk: a 256 KiB tmpfs, filled up.
    @Test func aFullDiskFailsTheRecordsSaysWhyAndWritingResumesWhenSpaceReturns() throws {
        let mountPoint = try ScratchDirectory(prefix: "so-full")
        try #require(mount("tmpfs", mountPoint.path, "tmpfs", 0, "size=256k,mode=0700") == 0, "mounting a tmpfs needs root (errno \(errno))")
        defer { umount2(mountPoint.path, Int32(MNT_DETACH)) }
        let directory = try OpenedDirectory.open(mountPoint.path)
        var configuration = JournalConfiguration()
        configuration.syncPolicy = .always
        let (journal, _) = try Journal.open(in: directory, configuration: configuration) { 7 }
        let reports = Locked<[JournalProgress]>([])
        let writer = try JournalWriter(journal: journal) { progress in reports.withLock { $0.append(progress) } }
        defer { writer.stop() }

        // Fill the disk to its last few KiB.
        let filler = try directory.openFile("filler", flags: O_WRONLY | O_CREAT)
        let block = [UInt8](repeating: 0xAB, count: 4096)
        while filler.writeAll(block) == nil {}
        writer.submit(batch(from: 1, count: 10))
        writer.submit(batch(from: 11, count: 400, padding: 100))
        #expect(eventually { reports.withLock { $0.contains { $0.through == 410 } } })
        let failing = try #require(reports.withLock { $0.first { !$0.failed.isEmpty } })
        #expect(failing.failed.contains { $0.contains(300) })
        #expect(failing.failure?.code == ENOSPC)
        guard case .failing(let why) = failing.health else { Issue.record("health stayed \(failing.health)"); return }
        #expect(why.contains("No space left on device"), "\(why)")

        // Space returns: the next records are written, health is back.
        filler.close()
        try directory.remove("filler")
        writer.submit(batch(from: 411, count: 10))
        #expect(eventually { reports.withLock { $0.last?.through == 420 } })
        let recovered = try #require(reports.withLock { $0.last })
        #expect(recovered.failed.isEmpty && recovered.health == .healthy)
        let sequences = try journal.records(from: 1, maxCount: 10_000).map(\.sequence)
        #expect(sequences.suffix(10) == Array(411...420))
        #expect(Set(sequences).isDisjoint(with: failing.failed.flatMap { Array($0) }))
        // What is on disk is whole records only.
        let (_, recovery) = try Journal.open(in: directory, configuration: configuration) { 8 }
        #expect(recovery.tornTailBytesCut == 0 && recovery.damage == nil)
    }
}
