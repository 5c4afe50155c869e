import Crypto
import Glibc

/// Checks a whole audit log: every MAC, every sequence number, every chain
/// link, and the end of the log against `audit.head`. Stops at the first
/// bad record and says which one and why.
public struct AuditLogVerifier: @unchecked Sendable {
    // SymmetricKey is an immutable value; it is only not marked Sendable.
    let key: SymmetricKey

    public init(key: SymmetricKey) {
        self.key = key
    }

    /// A verifier with the key of a state directory. Checks that the key is
    /// a regular file of the right size; it does not insist on its owner,
    /// so root can verify a log a dedicated user writes.
    public static func forStateDirectory(_ directory: String) throws(AuditKey.Failure) -> AuditLogVerifier {
        let loaded = try AuditKey.load(path: directory + "/" + AuditLogFormat.keyFileName, owner: nil, create: false)
        return AuditLogVerifier(key: loaded.key)
    }

    /// What is wrong, at which record.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// 1-based line number in the file.
        public var line: Int
        /// The record's sequence number when it could be read (or the one
        /// that is missing).
        public var seq: UInt64?
        public var reason: String

        public var description: String {
            "line \(line)\(seq.map { " (seq \($0))" } ?? ""): \(reason)"
        }
    }

    public struct Report: Sendable {
        public var logPath: String
        /// Records that verified before the first problem (all of them when intact).
        public var records: Int
        public var lastSeq: UInt64
        public var firstTime: String?
        public var lastTime: String?
        /// The sequence `audit.head` anchors, when it was checked.
        public var headSeq: UInt64?
        public var problem: Problem?
        public var isIntact: Bool { problem == nil }
    }

    /// Verifies `logPath`, and its end against `headPath` when given. With
    /// `byteLimit`, only that many bytes are read: a live daemon passes how
    /// much it has written, so a record being appended is not mistaken for
    /// a torn one. Throws only when the log cannot be read at all.
    public func verify(logPath: String, headPath: String?, byteLimit: Int? = nil) throws(AuditLogIOError) -> Report {
        // The head first: a writer moves it only after its records are on
        // disk, so the records it names are within what is read next.
        let head: HeadInput = if let headPath { .contents(try LogFileIO.readSmallFile(headPath, limit: 4096)) } else { .notChecked }
        return try verify(logPath: logPath, head: head, byteLimit: byteLimit)
    }

    /// `audit.head` as the verifier gets it: not checked, or the file's
    /// bytes (nil when it does not exist).
    enum HeadInput {
        case notChecked
        case contents([UInt8]?)
    }

    func verify(logPath: String, head headInput: HeadInput, byteLimit: Int?) throws(AuditLogIOError) -> Report {
        var head: AuditHead?
        var headProblem: String?
        var checkHead = false
        if case .contents(let bytes) = headInput {
            checkHead = true
            if let bytes {
                do {
                    head = try AuditHead.decode(bytes, key: key)
                } catch {
                    headProblem = "\(error)"
                }
            }
        }
        var report = Report(logPath: logPath, records: 0, lastSeq: 0, headSeq: head?.seq)

        let fd = open(logPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            let code = errno
            guard code == ENOENT, let head else { throw AuditLogIOError(operation: "open", path: logPath, code: code) }
            report.problem = Problem(line: 1, seq: 1, reason: "the log file is missing, but audit.head records that it reached seq \(head.seq): it was deleted")
            return report
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw AuditLogIOError(operation: "stat", path: logPath, code: errno) }
        let limit = min(byteLimit ?? Int(info.st_size), Int(info.st_size))

        var reader = LineReader(fd: fd, limit: limit, maxLineBytes: AuditLogFormat.maxLineBytes)
        var expectedSeq: UInt64 = 1
        var expectedPrev = AuditLogFormat.genesis
        var lineNumber = 0
        while let item = try reader.next() {
            lineNumber += 1
            let line: [UInt8]
            switch item {
            case .line(let bytes):
                line = bytes
            case .unterminated:
                report.problem = Problem(line: lineNumber, seq: nil, reason: "incomplete record at the end of the file (no newline): a torn write or a truncation")
                return report
            case .tooLong:
                report.problem = Problem(line: lineNumber, seq: nil, reason: "unparsable line: longer than \(AuditLogFormat.maxLineBytes) bytes")
                return report
            }
            if line.isEmpty {
                report.problem = Problem(line: lineNumber, seq: nil, reason: "unparsable line: empty (a record was blanked or a newline inserted)")
                return report
            }
            let record: AuditRecord
            do {
                record = try AuditLogFormat.openLine(line[...], key: key)
            } catch {
                report.problem = Problem(line: lineNumber, seq: Self.claimedSeq(line), reason: "\(error)")
                return report
            }
            if record.seq != expectedSeq {
                let whereItIs = try locate(seq: expectedSeq, reader: &reader, after: lineNumber)
                let reason: String
                if record.seq < expectedSeq {
                    reason = "out of order: expected seq \(expectedSeq), found seq \(record.seq) again (a record was duplicated or moved)"
                } else if let whereItIs {
                    reason = "out of order: expected seq \(expectedSeq), found seq \(record.seq); seq \(expectedSeq) is at line \(whereItIs) (records were reordered)"
                } else {
                    reason = "sequence gap: expected seq \(expectedSeq), found seq \(record.seq); seq \(expectedSeq) is not in the file (records were deleted)"
                }
                report.problem = Problem(line: lineNumber, seq: record.seq, reason: reason)
                return report
            }
            if record.prev != expectedPrev {
                let previous = lineNumber == 1 ? "the genesis value" : "the hash of line \(lineNumber - 1)"
                report.problem = Problem(line: lineNumber, seq: record.seq, reason: "broken chain: \"prev\" does not match \(previous) (a record before it was replaced)")
                return report
            }
            expectedPrev = AuditLogFormat.hash(line)
            expectedSeq += 1
            report.records += 1
            report.lastSeq = record.seq
            if report.firstTime == nil { report.firstTime = record.time }
            report.lastTime = record.time
            if let head, head.seq == record.seq, head.hash != expectedPrev {
                report.problem = Problem(line: lineNumber, seq: record.seq, reason: "differs from the record audit.head anchored (the record was replaced)")
                return report
            }
        }

        guard checkHead else { return report }
        if let headProblem {
            report.problem = Problem(line: lineNumber + 1, seq: nil, reason: headProblem)
        } else if let head {
            if head.seq > report.lastSeq {
                report.problem = Problem(
                    line: lineNumber + 1, seq: report.lastSeq + 1,
                    reason: "missing: the log ends at seq \(report.lastSeq) but audit.head records that it reached seq \(head.seq) (records were deleted from the end)")
            }
        } else if report.records > 0 {
            report.problem = Problem(line: lineNumber + 1, seq: nil, reason: "audit.head is missing: records deleted from the end of the log could not be detected (it was deleted)")
        }
        return report
    }

    /// Looks further down the file for a record with `seq`, to tell a
    /// reordering from a deletion. Returns its line number.
    private func locate(seq: UInt64, reader: inout LineReader, after lineNumber: Int) throws(AuditLogIOError) -> Int? {
        var number = lineNumber
        while let item = try reader.next() {
            number += 1
            guard case .line(let line) = item, let record = try? AuditLogFormat.openLine(line[...], key: key) else { continue }
            if record.seq == seq { return number }
        }
        return nil
    }

    /// The `seq` a line claims, for messages about lines that fail to verify.
    static func claimedSeq(_ line: [UInt8]) -> UInt64? {
        let prefix = Array(#"{"seq":"#.utf8)
        guard line.starts(with: prefix) else { return nil }
        var value: UInt64 = 0
        var digits = 0
        for byte in line.dropFirst(prefix.count) {
            guard byte >= 0x30 && byte <= 0x39, digits < 19 else { break }
            value = value * 10 + UInt64(byte - 0x30)
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}
