import Glibc
import CSecureOpsSystem
import Testing
@testable import SecureOpsJournal

@Suite("Journal: records and recovery", .timeLimit(.minutes(2)))
struct JournalRecoveryTests {
    @Test func crc32cMatchesTheCastagnoliCheckValue() {
        let text = Array("123456789".utf8)
        #expect(text.withUnsafeBytes { cs_crc32c(0, $0.baseAddress, $0.count) } == 0xE306_9283)
        // Continuing over pieces gives the same as all at once.
        let split = text.withUnsafeBytes { raw in
            cs_crc32c(cs_crc32c(0, raw.baseAddress, 4), raw.baseAddress! + 4, 5)
        }
        #expect(split == 0xE306_9283)
    }

    @Test func recordsSurviveReopeningAndTheStreamKeepsItsEpochAndSequences() throws {
        let fixture = try JournalFixture()
        let (journal, created) = try fixture.open()
        #expect(created.createdNewStream)
        try journal.append(batch(from: 1, count: 10))
        let epoch = journal.epoch

        let (reopened, recovery) = try fixture.open()
        #expect(!recovery.createdNewStream && recovery.records == 10 && recovery.tornTailBytesCut == 0 && recovery.damage == nil)
        #expect(reopened.epoch == epoch)
        #expect(reopened.nextSequence == 11)
        let records = try reopened.records(from: 1, maxCount: 100)
        #expect(records.map(\.sequence) == Array(1...10))
        #expect(records.map(payloadText) == (1...10).map { "alert \($0)\n" })
        try reopened.append(batch(from: 11, count: 1))
        #expect(try reopened.records(from: 11, maxCount: 1).map(payloadText) == ["alert 11\n"])
    }

    @Test func aRecordCutShortByTheEndOfTheFileIsCutOffAndCounted() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 10))
        let name = fixture.segmentNames[0]
        let whole = fixture.size(of: name)
        // The first 30 bytes of an 11th record: a write the crash interrupted.
        let payload = batch(from: 11, count: 1).payloads
        var next = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize + payload.count)
        payload.withUnsafeBytes { payload in
            next.withUnsafeMutableBytes { _ = JournalFormat.writeRecord(sequence: 11, timestampMilliseconds: 1, payload: payload, into: $0) }
        }
        fixture.appendBytes(Array(next.prefix(30)), to: name)

        let (reopened, recovery) = try fixture.open()
        #expect(recovery.tornTailBytesCut == 30)
        #expect(recovery.tornTailReason == "a record cut short by the end of the file")
        #expect(recovery.damage == nil)
        #expect(fixture.size(of: name) == whole)
        #expect(reopened.nextSequence == 11)
    }

    @Test func aLastRecordWithWrongBytesIsATornTail() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 10))
        let name = fixture.segmentNames[0]
        fixture.flipByte(in: name, at: fixture.size(of: name) - 3)
        let (reopened, recovery) = try fixture.open()
        #expect(recovery.tornTailReason == "a checksum mismatch")
        #expect(recovery.damage == nil)
        #expect(reopened.nextSequence == 10)
        #expect(try reopened.records(from: 1, maxCount: 100).map(\.sequence) == Array(1...9))
    }

    @Test func zerosAfterTheLastRecordAreATornTail() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 5))
        fixture.appendBytes([UInt8](repeating: 0, count: 4096), to: fixture.segmentNames[0])
        let (reopened, recovery) = try fixture.open()
        #expect(recovery.tornTailBytesCut == 4096 && recovery.damage == nil)
        #expect(reopened.nextSequence == 6)
    }

    @Test func aDamagedRecordBeforeTheEndMovesTheSegmentsAsideAndStartsANewStream() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 10))
        let oldEpoch = journal.epoch
        let name = fixture.segmentNames[0]
        // A byte inside record 5's payload.
        let fifth = try #require(try journal.records(from: 5, maxCount: 1).first)
        _ = fifth
        let offset = JournalFormat.segmentHeaderSize + 4 * (JournalFormat.recordHeaderSize + "alert 1\n".utf8.count) + JournalFormat.recordHeaderSize + 2
        fixture.flipByte(in: name, at: offset)

        let (reopened, recovery) = try fixture.open()
        let damage = try #require(recovery.damage)
        #expect(damage.segment == name)
        #expect(damage.lastIntactSequence == 4)
        #expect(damage.reason == "a checksum mismatch")
        #expect(recovery.createdNewStream)
        #expect(reopened.epoch != oldEpoch)
        #expect(reopened.nextSequence == 1)
        // Nothing deleted: the damaged segment is kept for an operator.
        #expect(fixture.directory.exists(damage.movedAsideTo.split(separator: "/").last.map(String.init)! ))
        var info = stat()
        #expect(stat(damage.movedAsideTo + "/" + name, &info) == 0)
        #expect(damage.description.contains("after sequence 4"))
    }

    @Test func aSegmentOfAnotherStreamIsDamageNotData() throws {
        let fixture = try JournalFixture { $0.segmentBytes = 1 }
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 1))
        try journal.append(batch(from: 2, count: 1))
        #expect(fixture.segmentNames.count == 2)
        // Rewrite the second segment's header with another epoch.
        let header = JournalFormat.encode(.init(epoch: 42, firstSequence: 2))
        let fd = open(fixture.path(fixture.segmentNames[1]), O_RDWR)
        _ = header.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        close(fd)
        let (_, recovery) = try fixture.open()
        #expect(recovery.damage?.reason.hasPrefix("belongs to stream 000000000000002a") == true)
    }

    /// A crash can stop a write anywhere: for every length the file may be
    /// cut to, recovery keeps exactly the records wholly before the cut and
    /// the journal takes new records after them.
    @Test func cutAnywhereRecoveryKeepsExactlyTheWholeRecords() throws {
        let fixture = try JournalFixture()
        let (journal, _) = try fixture.open()
        try journal.append(batch(from: 1, count: 40, padding: 50))
        let name = fixture.segmentNames[0]
        let full = fixture.size(of: name)
        let pristine = try #require(FileDescriptorReader.readAll(fixture.path(name)))
        var ends: [Int] = []
        var offset = JournalFormat.segmentHeaderSize
        for record in try journal.records(from: 1, maxCount: 100) {
            offset += JournalFormat.recordHeaderSize + record.payload.count
            ends.append(offset)
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let cut = Int.random(in: JournalFormat.segmentHeaderSize...full, using: &generator)
            FileDescriptorReader.write(pristine, to: fixture.path(name))
            fixture.truncate(name, to: cut)
            let (reopened, recovery) = try fixture.open()
            let whole = ends.filter { $0 <= cut }.count
            #expect(recovery.damage == nil, "cut at \(cut)")
            #expect(reopened.nextSequence == UInt64(whole + 1), "cut at \(cut)")
            #expect(try reopened.records(from: 1, maxCount: 100).count == whole)
            try reopened.append(batch(from: UInt64(whole + 1), count: 1))
        }
    }
}

/// Whole-file reads and writes for the tests that damage segments.
enum FileDescriptorReader {
    static func readAll(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return bytes
    }

    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_TRUNC)
        precondition(fd >= 0)
        defer { close(fd) }
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
