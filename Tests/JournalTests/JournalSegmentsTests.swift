import Glibc
import Testing
@testable import SecureOpsJournal

@Suite("Journal: segments and retention", .timeLimit(.minutes(2)))
struct JournalSegmentsTests {
    @Test func recordsAcrossSegmentsReadInOrderFromAnySequence() throws {
        let fixture = try JournalFixture { $0.segmentBytes = 1024 }
        let (journal, _) = try fixture.open()
        for first in stride(from: 1, through: 291, by: 10) {
            try journal.append(batch(from: UInt64(first), count: 10, padding: 40))
        }
        #expect(fixture.segmentNames.count > 5)
        #expect(try journal.records(from: 137, maxCount: 20).map(\.sequence) == Array(137...156))
        let (reopened, _) = try fixture.open()
        #expect(try reopened.records(from: 1, maxCount: 1000).map(\.sequence) == Array(1...300))
        #expect(try reopened.newest(count: 5, maxBytes: .max).map(\.sequence) == Array(296...300))
    }

    @Test func aBatchAfterAGapIsKeptAndReadersSkipTheGap() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 3))
        try journal.append(batch(from: 7, count: 3)) // 4...6 failed to write
        #expect(try journal.records(from: 4, maxCount: 10).map(\.sequence) == [7, 8, 9])
        let (reopened, recovery) = try fixture.open()
        #expect(recovery.damage == nil && reopened.nextSequence == 10)
    }

    @Test func retentionDropsTheOldestSegmentsOverTheByteLimitButNeverTheOneBeingWritten() throws {
        let fixture = try JournalFixture { $0.segmentBytes = 1024; $0.maxBytes = 4096 }
        let (journal, _) = try fixture.open()
        for first in stride(from: 1, through: 491, by: 10) {
            try journal.append(batch(from: UInt64(first), count: 10, padding: 40))
        }
        let dropped = journal.enforceRetention(nowMilliseconds: 1_700_000_000_000)
        #expect(!dropped.isEmpty)
        #expect(journal.statistics.bytes <= 4096 + 1024 * 2)
        #expect(fixture.segmentNames.count == journal.statistics.segments)
        let first = journal.firstSequence
        #expect(first == dropped.last!.lastSequence + 1)
        // A reader asking for dropped records gets the oldest kept.
        #expect(try journal.records(from: 1, maxCount: 1).first?.sequence == first)

        // Over the limit with one segment: the one being written stays.
        let single = try JournalFixture { $0.maxBytes = 10 }
        let (only, _) = try single.open()
        try only.append(batch(from: 1, count: 50))
        #expect(only.enforceRetention(nowMilliseconds: 0).isEmpty && single.segmentNames.count == 1)
    }

    @Test func retentionDropsSegmentsWhoseNewestRecordIsOlderThanTheAgeLimit() throws {
        let fixture = try JournalFixture { $0.segmentBytes = 1; $0.maxAgeSeconds = 60 }
        let (journal, _) = try fixture.open()
        let now: Int64 = 1_700_000_000_000
        try journal.append(batch(from: 1, count: 1, timestamp: now - 120_000))
        try journal.append(batch(from: 2, count: 1, timestamp: now - 90_000))
        try journal.append(batch(from: 3, count: 1, timestamp: now - 30_000))
        try journal.append(batch(from: 4, count: 1, timestamp: now))
        let dropped = journal.enforceRetention(nowMilliseconds: now)
        #expect(dropped.map(\.firstSequence) == [1, 2])
        #expect(journal.firstSequence == 3)
    }
}
