import Glibc
import SecureOpsSystem

/// One segment file: its header, how far whole records reach, and a sparse
/// index from sequence to offset. The journal's lock guards the mutable
/// fields; the descriptor lives as long as the object, so a reader holding
/// a segment that retention has just unlinked still reads it.
final class JournalSegment: @unchecked Sendable {
    let name: String
    let header: JournalFormat.SegmentHeader
    let file: FileDescriptor
    /// Bytes of the header and whole records: readers stop here, the next
    /// record is written here.
    var size: Int
    var lastSequence: UInt64?
    var count: Int
    /// The newest record's timestamp (for retention by age).
    var newestMilliseconds: Int64
    /// Every `indexStride`-th record's sequence and offset, ascending.
    var index: [(sequence: UInt64, offset: Int)]

    static let indexStride = 128

    init(name: String, header: JournalFormat.SegmentHeader, file: FileDescriptor, scan: SegmentScan) {
        self.name = name
        self.header = header
        self.file = file
        size = scan.end
        lastSequence = scan.lastSequence
        count = scan.count
        newestMilliseconds = scan.newestMilliseconds
        index = scan.index
    }

    /// Notes a record written at `offset` (the writer, under the lock).
    func noteAppended(sequence: UInt64, timestampMilliseconds: Int64, offset: Int, size recordSize: Int) {
        precondition(lastSequence.map { sequence > $0 } ?? (sequence >= header.firstSequence),
                     "journal sequences must increase: \(sequence) after \(String(describing: lastSequence)) in \(name)")
        if count % Self.indexStride == 0 { index.append((sequence, offset)) }
        count += 1
        lastSequence = sequence
        newestMilliseconds = max(newestMilliseconds, timestampMilliseconds)
        size = offset + recordSize
    }

    /// Where to start reading for `sequence`: the offset of the last
    /// indexed record at or before it.
    func startOffset(for sequence: UInt64) -> Int {
        var low = 0
        var high = index.count - 1
        var best = JournalFormat.segmentHeaderSize
        while low <= high {
            let mid = (low + high) / 2
            if index[mid].sequence <= sequence {
                best = index[mid].offset
                low = mid + 1
            } else {
                high = mid - 1
            }
        }
        return best
    }
}

/// What reading a segment from start to end found.
struct SegmentScan {
    var end = JournalFormat.segmentHeaderSize
    var lastSequence: UInt64?
    var count = 0
    var newestMilliseconds: Int64 = 0
    var index: [(sequence: UInt64, offset: Int)] = []
    var stop = Stop.endOfFile

    enum Stop: Equatable {
        case endOfFile
        /// Bytes at `end` that are not a record. `isTornTail`: they run to
        /// the end of the file and look like an interrupted write (a record
        /// cut short, the last record's bytes wrong, or zeros), which a
        /// crash leaves; otherwise whole records follow damaged bytes.
        case damaged(reason: String, isTornTail: Bool)
    }

    /// Reads every record after the header, `chunkSize` bytes at a time
    /// (more when one record is larger).
    static func scan(_ file: FileDescriptor, header: JournalFormat.SegmentHeader, fileSize: Int, chunkSize: Int = 4 << 20) -> SegmentScan {
        var scan = SegmentScan()
        var buffer: [UInt8] = []
        var bufferStart = scan.end // the file offset of buffer[0]
        while scan.end < fileSize {
            let position = scan.end - bufferStart
            let available = buffer.count - position
            var needed = JournalFormat.recordHeaderSize
            if available >= needed {
                let length = buffer.withUnsafeBytes { Int($0.loadLittleEndian(UInt32.self, at: position)) }
                guard length <= JournalFormat.maxPayloadBytes else {
                    scan.stop = .damaged(reason: "a record length of \(length) bytes", isTornTail: scan.end + JournalFormat.recordHeaderSize + length >= fileSize)
                    break
                }
                needed += length
            }
            if available < needed {
                guard scan.end + needed <= fileSize else {
                    scan.stop = .damaged(reason: "a record cut short by the end of the file", isTornTail: true)
                    break
                }
                guard let chunk = file.read(at: scan.end, count: min(max(chunkSize, needed), fileSize - scan.end)), chunk.count >= needed else {
                    scan.stop = .damaged(reason: "unreadable (errno \(errno))", isTornTail: false)
                    break
                }
                buffer = chunk
                bufferStart = scan.end
                continue
            }
            let decoded = buffer.withUnsafeBytes { JournalFormat.decodeRecord(UnsafeRawBufferPointer(rebasing: $0[position..<position + needed])) }
            switch decoded {
            case .record(let sequence, let milliseconds, _, let size):
                let floor = scan.lastSequence.map { $0 + 1 } ?? header.firstSequence
                guard sequence >= floor else {
                    scan.stop = .damaged(reason: "sequence \(sequence) where \(floor) or later belongs", isTornTail: false)
                    return scan
                }
                if scan.count % JournalSegment.indexStride == 0 { scan.index.append((sequence, scan.end)) }
                scan.count += 1
                scan.lastSequence = sequence
                scan.newestMilliseconds = max(scan.newestMilliseconds, milliseconds)
                scan.end += size
            case .truncated:
                preconditionFailure("a record decoded from the \(needed) bytes it needs was truncated")
            case .invalid(let reason):
                scan.stop = .damaged(reason: reason, isTornTail: scan.end + needed >= fileSize)
                return finish(scan, file, fileSize)
            }
        }
        return finish(scan, file, fileSize)
    }

    /// Damaged bytes followed by nothing but zeros are a torn tail too.
    private static func finish(_ scan: SegmentScan, _ file: FileDescriptor, _ fileSize: Int) -> SegmentScan {
        var scan = scan
        if case .damaged(let reason, false) = scan.stop, onlyZeros(file, from: scan.end, to: fileSize) {
            scan.stop = .damaged(reason: reason, isTornTail: true)
        }
        return scan
    }

    /// Whether `[from, to)` holds only zero bytes: what a file system leaves
    /// where a write was allocated but its data never reached the disk.
    static func onlyZeros(_ file: FileDescriptor, from: Int, to: Int) -> Bool {
        var offset = from
        while offset < to {
            guard let bytes = file.read(at: offset, count: min(1 << 20, to - offset)), !bytes.isEmpty else { return false }
            if bytes.contains(where: { $0 != 0 }) { return false }
            offset += bytes.count
        }
        return true
    }
}
