import Glibc
import SecureOpsSystem
import TestSupport
@testable import SecureOpsJournal

/// A journal in a scratch directory, reopened as often as a test likes.
final class JournalFixture {
    let scratch: ScratchDirectory
    let directory: OpenedDirectory
    var configuration: JournalConfiguration
    private var epochs: UInt64 = 0x5EC0_0000_0000_0000

    init(configure: (inout JournalConfiguration) -> Void = { _ in }) throws {
        scratch = try ScratchDirectory(prefix: "so-journal")
        directory = try OpenedDirectory.open(scratch.path)
        configuration = JournalConfiguration()
        configure(&configuration)
    }

    func open() throws -> (Journal, JournalRecovery) {
        try Journal.open(in: directory, configuration: configuration) {
            epochs += 1
            return epochs
        }
    }

    var segmentNames: [String] {
        directory.names().filter { $0.hasSuffix(".journal") }.sorted()
    }

    func path(_ name: String) -> String { directory.pathOf(name) }

    func size(of name: String) -> Int {
        var info = stat()
        return stat(path(name), &info) == 0 ? Int(info.st_size) : -1
    }

    /// Overwrites one byte of a file.
    func flipByte(in name: String, at offset: Int) {
        let fd = Glibc.open(path(name), O_RDWR)
        precondition(fd >= 0)
        defer { Glibc.close(fd) }
        var byte: UInt8 = 0
        pread(fd, &byte, 1, off_t(offset))
        byte ^= 0x5A
        pwrite(fd, &byte, 1, off_t(offset))
    }

    func appendBytes(_ bytes: [UInt8], to name: String) {
        let fd = Glibc.open(path(name), O_WRONLY | O_APPEND)
        precondition(fd >= 0)
        defer { Glibc.close(fd) }
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    func truncate(_ name: String, to length: Int) {
        precondition(Glibc.truncate(path(name), off_t(length)) == 0)
    }
}

/// A batch of `count` payloads "alert <sequence>\n" from `first`.
func batch(from first: UInt64, count: Int, timestamp: Int64 = 1_700_000_000_000, padding: Int = 0) -> JournalBatch {
    var payloads: [UInt8] = []
    var lengths: [Int] = []
    for sequence in first..<first + UInt64(count) {
        let payload = Array("alert \(sequence)\(String(repeating: "x", count: padding))\n".utf8)
        payloads += payload
        lengths.append(payload.count)
    }
    return JournalBatch(firstSequence: first, timestampMilliseconds: timestamp, payloads: payloads, lengths: lengths)
}

func payloadText(_ record: JournalRecord) -> String {
    String(decoding: record.payload, as: UTF8.self)
}
