import Crypto
import Glibc
import SecureOpsSystem

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
    /// a regular file nobody else may write, of the right size; it does not
    /// insist on its owner, so root can verify a log a dedicated user writes.
    public static func forStateDirectory(_ directory: OpenedDirectory) throws(AuditKey.Failure) -> AuditLogVerifier {
        AuditLogVerifier(key: try AuditKey.load(in: directory, owner: nil, create: false).key)
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

    /// Where a verified stretch of the file ends: enough to resume there.
    public struct Position: Sendable, Equatable {
        /// Byte offset just past the last verified line.
        public var offset: Int
        /// Lines read so far.
        public var line: Int
        public var nextSeq: UInt64
        /// Hash of the last verified line (the next record's `prev`).
        public var prev: String

        public static let start = Position(offset: 0, line: 0, nextSeq: 1, prev: AuditLogFormat.genesis)
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
        /// Where the verified records end (set when intact).
        public var end: Position?
        /// Records that say the chain was restarted or a run ended without
        /// stopping (`log-reset`, `unclean-shutdown`): intact, but worth a
        /// look.
        public var notices: [String] = []
        public var isIntact: Bool { problem == nil }
    }

    /// `audit.head` as the verifier gets it: not checked, or the file's
    /// bytes (nil when it does not exist).
    public enum HeadInput: Sendable {
        case notChecked
        case contents([UInt8]?)
    }

    /// Verifies the log of a state directory against its head. A key
    /// without a log, or a head without one, is tampering: someone deleted
    /// the log. Throws only when the log cannot be read at all.
    public func verify(stateDirectory directory: OpenedDirectory) throws(SystemError) -> Report {
        // The head first: a writer moves it only after its records are on
        // disk, so the records it names are within what is read next.
        let headBytes = try directory.readFile(AuditLogFormat.headFileName, limit: 4096)
        let logPath = directory.pathOf(AuditLogFormat.logFileName)
        let file: FileDescriptor
        do {
            file = try directory.openFile(AuditLogFormat.logFileName, flags: O_RDONLY)
        } catch {
            guard error.code == ENOENT else { throw error }
            var report = Report(logPath: logPath, records: 0, lastSeq: 0)
            let head = headBytes.flatMap { try? AuditHead.decode($0, key: key) }
            report.headSeq = head?.seq
            let reason = head.map { "the log file is missing, but audit.head records that it reached seq \($0.seq): it was deleted" }
                ?? "the log file is missing, but \(AuditLogFormat.keyFileName) exists: the log (and its head) were deleted"
            report.problem = Problem(line: 1, seq: 1, reason: reason)
            return report
        }
        var report = try verify(file: file, path: logPath, head: .contents(headBytes), byteLimit: nil, resumingAfter: nil)
        if report.isIntact && report.records == 0 {
            report.problem = Problem(line: 1, seq: 1, reason: "the log is empty, but \(AuditLogFormat.keyFileName) exists: its records were deleted")
        }
        return report
    }

    /// Verifies one file by path, without a head (a log moved aside).
    public func verify(logPath: String) throws(SystemError) -> Report {
        let fd = open(logPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw SystemError("open", logPath) }
        return try verify(file: FileDescriptor(adopting: fd), path: logPath, head: .notChecked, byteLimit: nil, resumingAfter: nil)
    }

    /// Verifies `file` up to `byteLimit` (a live daemon passes how much it
    /// has written, so a record being appended is not mistaken for a torn
    /// one). With `resumingAfter`, starts after a stretch verified earlier:
    /// the line that ends there must still be the one that was verified,
    /// and the counts in the report cover only what was read now.
    public func verify(
        file: FileDescriptor, path logPath: String, head headInput: HeadInput, byteLimit: Int?, resumingAfter start: Position?
    ) throws(SystemError) -> Report {
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
        let size = try file.status(path: logPath).size
        let limit = min(byteLimit ?? size, size)
        var position = start ?? .start
        report.lastSeq = position.nextSeq - 1

        if let start, start.offset > 0 {
            // The record that ends the verified stretch must be unchanged.
            guard start.offset <= limit, let last = AuditLog.lastLine(file, size: start.offset),
                  AuditLogFormat.hash(last) == start.prev
            else {
                report.problem = Problem(
                    line: start.line, seq: start.nextSeq - 1,
                    reason: "changed after it was verified: the file was rewritten up to here")
                return report
            }
        }

        var reader = LineReader(file: file, path: logPath, from: position.offset, limit: limit, maxLineBytes: AuditLogFormat.maxLineBytes)
        var lineNumber = position.line
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
            let expectedSeq = position.nextSeq
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
            if record.prev != position.prev {
                let previous = lineNumber == 1 ? "the genesis value" : "the hash of line \(lineNumber - 1)"
                report.problem = Problem(line: lineNumber, seq: record.seq, reason: "broken chain: \"prev\" does not match \(previous) (a record before it was replaced)")
                return report
            }
            position = Position(offset: reader.offset, line: lineNumber, nextSeq: record.seq + 1, prev: AuditLogFormat.hash(line))
            report.records += 1
            report.lastSeq = record.seq
            if report.firstTime == nil { report.firstTime = record.time }
            report.lastTime = record.time
            if let notice = Self.notice(record) { report.notices.append(notice) }
            if let head, head.seq == record.seq, head.hash != position.prev {
                report.problem = Problem(line: lineNumber, seq: record.seq, reason: "differs from the record audit.head anchored (the record was replaced)")
                return report
            }
        }
        report.end = position

        guard checkHead else { return report }
        if let headProblem {
            report.problem = Problem(line: lineNumber + 1, seq: nil, reason: headProblem)
        } else if let head {
            if head.seq > report.lastSeq {
                report.problem = Problem(
                    line: lineNumber + 1, seq: report.lastSeq + 1,
                    reason: "missing: the log ends at seq \(report.lastSeq) but audit.head records that it reached seq \(head.seq) (records were deleted from the end)")
            }
        } else if report.lastSeq > 0 {
            report.problem = Problem(line: lineNumber + 1, seq: nil, reason: "audit.head is missing: records deleted from the end of the log could not be detected (it was deleted)")
        }
        if report.problem != nil { report.end = nil }
        return report
    }

    /// What an intact record says that a reader should see.
    private static func notice(_ record: AuditRecord) -> String? {
        switch record.event {
        case "log-reset":
            let previous = record.fields["previousLog"]?.stringValue.map { "; the earlier log is \($0)" } ?? ""
            return "seq \(record.seq) (\(record.time)): a new chain was started: \(record.fields["reason"]?.stringValue ?? "no reason recorded")\(previous)"
        case "unclean-shutdown":
            var last = "?"
            if case .number(let number)? = record.fields["lastSeq"], let seq = number.uint64Value { last = "\(seq)" }
            return "seq \(record.seq) (\(record.time)): the run before ended without stopping (its last record is seq \(last)); records written after its last anchor may be missing"
        default:
            return nil
        }
    }

    /// Looks further down the file for a record with `seq`, to tell a
    /// reordering from a deletion. Returns its line number.
    private func locate(seq: UInt64, reader: inout LineReader, after lineNumber: Int) throws(SystemError) -> Int? {
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
