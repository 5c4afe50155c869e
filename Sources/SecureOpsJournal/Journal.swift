import Glibc
import SecureOpsSystem

/// An append-only, checksummed record of a broadcast stream on disk
/// (docs/DESIGN.md, "The journal"): the records of one stream (one epoch),
/// numbered by the stream's sequences, in segment files in one directory.
///
/// One writer at a time writes (`append`, or `prepareAppend` and its
/// outcome, `rotate`, `sync`; the `JournalWriter`'s thread, or the event
/// loop's io_uring writer); retention may run beside it (it never drops
/// the segment being written); any thread reads (`records(from:)`), up to what has
/// been written whole. Opening recovers: a torn tail is cut, damage before
/// the end moves the segments aside and starts a new stream.
public final class Journal: Sendable {
    /// The stream the records belong to, kept across restarts.
    public let epoch: UInt64
    public let configuration: JournalConfiguration
    let directory: OpenedDirectory
    private let state: Locked<State>

    private struct State {
        /// Oldest first; never empty; the last is the one written to.
        var segments: [JournalSegment]
        var nextSequence: UInt64
        /// Segments written since the last `sync` (the active one and any
        /// rotated away from).
        var unsynced: [JournalSegment] = []
    }

    private init(epoch: UInt64, configuration: JournalConfiguration, directory: OpenedDirectory, segments: [JournalSegment], nextSequence: UInt64) {
        precondition(!segments.isEmpty, "a journal has a segment to write to")
        self.epoch = epoch
        self.configuration = configuration
        self.directory = directory
        state = Locked(State(segments: segments, nextSequence: nextSequence))
    }

    // MARK: - Opening and recovery

    /// Opens the journal in `directory` (checked by the caller), recovering
    /// what a crash left; `newEpoch` names a stream when a new one begins.
    public static func open(
        in directory: OpenedDirectory, configuration: JournalConfiguration = JournalConfiguration(), newEpoch: () -> UInt64
    ) throws(JournalError) -> (Journal, JournalRecovery) {
        var recovery = JournalRecovery()
        let names = directory.names()
            .compactMap { name in JournalFormat.firstSequence(ofSegmentNamed: name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }
        var segments: [JournalSegment] = []
        var damage: (segment: String, offset: Int, reason: String)?
        for (index, (name, named)) in names.enumerated() {
            let isLast = index == names.count - 1
            let file: FileDescriptor
            do { file = try directory.openFile(name, flags: O_RDWR) } catch { throw .io(error) }
            let size: Int
            do { size = try file.status(path: directory.pathOf(name)).size } catch { throw .io(error) }
            let headerBytes = file.read(at: 0, count: JournalFormat.segmentHeaderSize) ?? []
            guard let header = headerBytes.withUnsafeBytes({ JournalFormat.decodeSegmentHeader($0) }) else {
                if isLast && size < JournalFormat.segmentHeaderSize {
                    // Created, then the process died before the header was
                    // whole: nothing was ever recorded in it.
                    do { try directory.remove(name) } catch { throw .io(error) }
                    recovery.tornTailBytesCut += size
                    recovery.tornTailReason = "a segment header cut short"
                    continue
                }
                damage = (name, 0, "not a journal segment header")
                break
            }
            if let first = segments.first, header.epoch != first.header.epoch {
                damage = (name, 0, "belongs to stream \(hex(header.epoch)), not \(hex(first.header.epoch))")
                break
            }
            let floor = segments.last.flatMap { $0.lastSequence.map { $0 + 1 } ?? $0.header.firstSequence + 1 } ?? 1
            guard header.firstSequence == named, header.firstSequence >= floor else {
                damage = (name, 0, "starts at sequence \(header.firstSequence), not where its name and the segment before it say")
                break
            }
            let scan = SegmentScan.scan(file, header: header, fileSize: size)
            if case .damaged(let reason, let isTornTail) = scan.stop {
                guard isLast && isTornTail else {
                    damage = (name, scan.end, reason)
                    segments.append(JournalSegment(name: name, header: header, file: file, scan: scan))
                    break
                }
                guard ftruncate(file.raw, off_t(scan.end)) == 0 else { throw .io(SystemError("ftruncate", directory.pathOf(name))) }
                _ = file.sync()
                recovery.tornTailBytesCut += size - scan.end
                recovery.tornTailReason = reason
            }
            segments.append(JournalSegment(name: name, header: header, file: file, scan: scan))
        }

        if let damage {
            let lastIntact = segments.last(where: { $0.lastSequence != nil })?.lastSequence
            let aside = try moveAside(names.map(\.0), in: directory, epoch: segments.first?.header.epoch)
            recovery.damage = JournalRecovery.Damage(
                segment: damage.segment, offset: damage.offset, reason: damage.reason,
                lastIntactSequence: lastIntact, movedAsideTo: directory.pathOf(aside))
            segments = []
        }
        recovery.segments = segments.count
        recovery.records = segments.reduce(0) { $0 + $1.count }
        guard let last = segments.last else {
            recovery.createdNewStream = true
            let epoch = newEpoch()
            let first = try createSegment(in: directory, header: .init(epoch: epoch, firstSequence: 1))
            return (Journal(epoch: epoch, configuration: configuration, directory: directory, segments: [first], nextSequence: 1), recovery)
        }
        let next = last.lastSequence.map { $0 + 1 } ?? last.header.firstSequence
        let journal = Journal(epoch: last.header.epoch, configuration: configuration, directory: directory, segments: segments, nextSequence: next)
        return (journal, recovery)
    }

    /// Moves every segment into a new directory beside them, so that
    /// nothing an operator may want to examine is deleted.
    private static func moveAside(_ names: [String], in directory: OpenedDirectory, epoch: UInt64?) throws(JournalError) -> String {
        let aside = "damaged-\(epoch.map(hex) ?? "unknown")-\(time(nil))"
        guard mkdirat(directory.descriptor.raw, aside, 0o700) == 0 || errno == EEXIST else {
            throw .io(SystemError("mkdir", directory.pathOf(aside)))
        }
        let target = openat(directory.descriptor.raw, aside, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard target >= 0 else { throw .io(SystemError("open", directory.pathOf(aside))) }
        defer { Glibc.close(target) }
        for name in names {
            guard renameat(directory.descriptor.raw, name, target, name) == 0 else {
                throw .io(SystemError("rename", directory.pathOf(name)))
            }
        }
        fsync(target)
        directory.sync()
        return aside
    }

    private static func createSegment(in directory: OpenedDirectory, header: JournalFormat.SegmentHeader) throws(JournalError) -> JournalSegment {
        let name = JournalFormat.segmentName(firstSequence: header.firstSequence)
        let file: FileDescriptor
        do { file = try directory.openFile(name, flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o600) } catch { throw .io(error) }
        if let code = file.writeAll(JournalFormat.encode(header)) {
            _ = try? directory.remove(name)
            throw .io(SystemError("write", directory.pathOf(name), code: code))
        }
        // The name must survive a power loss with the records in it.
        directory.sync()
        return JournalSegment(name: name, header: header, file: file, scan: SegmentScan())
    }

    // MARK: - Writing (one writer: the `JournalWriter`'s thread, or the event loop with io_uring)

    /// Writes `batch` after everything before it, in one write, starting a
    /// new segment first when the active one is full. All or nothing:
    /// after a failure (a full disk) the segment is cut back to where it
    /// was, and the batch's sequences stay missing from the journal; a
    /// later batch may follow them.
    public func append(_ batch: JournalBatch) throws(JournalError) {
        guard !batch.lengths.isEmpty else { return }
        if activeSegmentIsFull { try rotate(firstSequence: batch.firstSequence) }
        let append = prepareAppend([batch])
        if let code = Self.writeAll(UnsafeRawBufferPointer(append.bytes), to: append.segment.file, at: append.offset) {
            let error = SystemError("write", directory.pathOf(append.segment.name), code: code)
            appendFailed(append)
            throw .io(error)
        }
        appendWritten(append)
    }

    /// Whether the next write must start a new segment (`rotate`) first.
    public var activeSegmentIsFull: Bool {
        state.withLock { state in
            let active = state.segments[state.segments.count - 1]
            return active.size >= configuration.segmentBytes && active.count > 0
        }
    }

    /// Starts a new active segment whose first record will be
    /// `firstSequence`. Blocks on the disk: it creates a file and syncs
    /// the directory.
    public func rotate(firstSequence: UInt64) throws(JournalError) {
        let segment = try Self.createSegment(in: directory, header: .init(epoch: epoch, firstSequence: firstSequence))
        state.withLock { state in
            state.unsynced.append(state.segments[state.segments.count - 1])
            state.segments.append(segment)
        }
    }

    /// `batches` (consecutive, after everything written) encoded as records
    /// for one write at the end of the active segment. The caller writes
    /// `bytes` at `offset` of `descriptor`, then reports `appendWritten`
    /// or `appendFailed`; nothing else is appended meanwhile.
    public func prepareAppend(_ batches: [JournalBatch]) -> JournalAppend {
        let (segment, next) = state.withLock { ($0.segments[$0.segments.count - 1], $0.nextSequence) }
        precondition(!batches.isEmpty && batches[0].firstSequence >= next, "journal batches start after \(next)")
        // Encoded straight into the memory the write reads: no copy after.
        let records = batches.reduce(0) { $0 + $1.lengths.count }
        let bytes = UnsafeMutableRawBufferPointer.allocate(
            byteCount: batches.reduce(0) { $0 + $1.payloads.count } + records * JournalFormat.recordHeaderSize, alignment: 16)
        var placements: [JournalAppend.Placement] = []
        placements.reserveCapacity(records)
        var end = 0
        for batch in batches {
            precondition(placements.last.map { batch.firstSequence == $0.sequence + 1 } ?? true, "journal batches are consecutive")
            batch.payloads.withUnsafeBytes { payloads in
                var position = 0
                for (index, length) in batch.lengths.enumerated() {
                    let sequence = batch.firstSequence + UInt64(index)
                    let size = JournalFormat.writeRecord(
                        sequence: sequence, timestampMilliseconds: batch.timestampMilliseconds,
                        payload: UnsafeRawBufferPointer(rebasing: payloads[position..<position + length]),
                        into: UnsafeMutableRawBufferPointer(rebasing: bytes[end...]))
                    placements.append(.init(
                        sequence: sequence, timestampMilliseconds: batch.timestampMilliseconds, offset: segment.size + end, size: size))
                    end += size
                    position += length
                }
            }
        }
        assert(end == bytes.count, "the records fill the write exactly")
        return JournalAppend(segment: segment, offset: segment.size, bytes: bytes, placements: placements)
    }

    /// The write of `append` went through whole: its records are readable.
    public func appendWritten(_ append: JournalAppend) {
        state.withLock { state in
            let segment = append.segment
            assert(segment === state.segments[state.segments.count - 1] && segment.size == append.offset,
                   "an append is written where it was prepared, with nothing in between")
            for placement in append.placements {
                segment.noteAppended(
                    sequence: placement.sequence, timestampMilliseconds: placement.timestampMilliseconds,
                    offset: placement.offset, size: placement.size)
            }
            assert(segment.size == append.offset + append.bytes.count, "the records noted end where the write did")
            state.nextSequence = append.sequences.upperBound + 1
            if !state.unsynced.contains(where: { $0 === segment }) { state.unsynced.append(segment) }
        }
    }

    /// The write of `append` failed or fell short: whatever part reached
    /// the file is not a record, so the segment is cut back to where the
    /// append began, and the next append starts on a record boundary.
    /// Blocks on the disk (`ftruncate`).
    public func appendFailed(_ append: JournalAppend) {
        _ = ftruncate(append.segment.file.raw, off_t(append.offset))
    }

    /// A segment's path, for messages.
    public func path(ofSegment name: String) -> String { directory.pathOf(name) }

    /// The active segment, for an `fdatasync` its writer issues itself.
    public var activeSegment: JournalSegmentHandle {
        state.withLock { JournalSegmentHandle(segment: $0.segments[$0.segments.count - 1]) }
    }

    /// `fdatasync` of everything written since the last call.
    public func sync() throws(JournalError) {
        let segments = state.withLock { state in
            defer { state.unsynced.removeAll() }
            return state.unsynced
        }
        for segment in segments where fdatasync(segment.file.raw) != 0 {
            let error = SystemError("fdatasync", directory.pathOf(segment.name))
            state.withLock { $0.unsynced.append(contentsOf: segments) }
            throw .io(error)
        }
    }

    /// Drops the oldest segments while the journal is over its size or
    /// they are older than its age limit; never the one being written.
    /// Returns what was dropped.
    public func enforceRetention(nowMilliseconds: Int64) -> [DroppedSegment] {
        let cutoff = nowMilliseconds - Int64(configuration.maxAgeSeconds) * 1000
        let dropped: [JournalSegment] = state.withLock { state in
            var total = state.segments.reduce(0) { $0 + $1.size }
            var dropped: [JournalSegment] = []
            while state.segments.count > 1 {
                let oldest = state.segments[0]
                guard total > configuration.maxBytes || (oldest.count > 0 && oldest.newestMilliseconds < cutoff) else { break }
                total -= oldest.size
                dropped.append(state.segments.removeFirst())
            }
            return dropped
        }
        for segment in dropped { _ = try? directory.remove(segment.name) }
        if !dropped.isEmpty { directory.sync() }
        return dropped.compactMap { segment in
            segment.lastSequence.map { DroppedSegment(name: segment.name, firstSequence: segment.header.firstSequence, lastSequence: $0, records: segment.count) }
        }
    }

    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to file: FileDescriptor, at offset: Int) -> Int32? {
        var written = 0
        while written < bytes.count {
            let n = pwrite(file.raw, bytes.baseAddress! + written, bytes.count - written, off_t(offset + written))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return errno }
            if n == 0 { return EIO }
            written += n
        }
        return nil
    }

    // MARK: - Reading (any thread)

    /// The sequence the next record will carry.
    public var nextSequence: UInt64 { state.withLock { $0.nextSequence } }

    /// The oldest sequence still in the journal (`nextSequence` when empty).
    public var firstSequence: UInt64 {
        state.withLock { state in
            state.segments.first(where: { $0.count > 0 }).map { $0.startSequence } ?? state.nextSequence
        }
    }

    public var statistics: JournalStatistics {
        state.withLock { state in
            JournalStatistics(
                segments: state.segments.count, bytes: state.segments.reduce(0) { $0 + $1.size },
                records: state.segments.reduce(0) { $0 + $1.count },
                firstSequence: state.segments.first(where: { $0.count > 0 }).map { $0.startSequence } ?? state.nextSequence,
                nextSequence: state.nextSequence)
        }
    }

    /// Records with sequence `sequence` or later, in order, at most
    /// `maxCount` and about `maxBytes` of payload (at least one record).
    /// The first may be later than `sequence` where retention or a failed
    /// write left a gap.
    public func records(from sequence: UInt64, maxCount: Int, maxBytes: Int = .max) throws(JournalError) -> [JournalRecord] {
        var records: [JournalRecord] = []
        try forEachRecord(from: sequence, maxCount: maxCount, maxBytes: maxBytes) { recordSequence, milliseconds, payload in
            records.append(JournalRecord(sequence: recordSequence, timestampMilliseconds: milliseconds, payload: Array(payload)))
        }
        return records
    }

    /// `records(from:maxCount:maxBytes:)` without a copy per record: `body`
    /// sees each payload in the read buffer, valid only during the call.
    /// Returns how many records it saw.
    @discardableResult
    public func forEachRecord(
        from sequence: UInt64, maxCount: Int, maxBytes: Int = .max,
        _ body: (_ sequence: UInt64, _ timestampMilliseconds: Int64, _ payload: UnsafeRawBufferPointer) -> Void
    ) throws(JournalError) -> Int {
        let segments: [(JournalSegment, Int)] = state.withLock { state in state.segments.map { ($0, $0.size) } }
        var count = 0
        var bytes = 0
        /// Hands one record to `body`; true when enough were seen.
        func take(_ recordSequence: UInt64, _ milliseconds: Int64, _ payload: UnsafeRawBufferPointer) -> Bool {
            guard recordSequence >= sequence else { return false }
            body(recordSequence, milliseconds, payload)
            count += 1
            bytes += payload.count
            return count >= maxCount || bytes >= maxBytes
        }
        for (segment, size) in segments {
            guard let last = segment.lastSequence, last >= sequence else { continue }
            var offset = segment.startOffset(for: sequence)
            while offset < size {
                guard let chunk = segment.file.read(at: offset, count: min(256 << 10, size - offset)), !chunk.isEmpty else {
                    throw .io(SystemError("read", directory.pathOf(segment.name)))
                }
                var position = 0
                var outcome = ReadOutcome.more
                chunk.withUnsafeBytes { raw in
                    while position < raw.count {
                        switch JournalFormat.decodeRecord(UnsafeRawBufferPointer(rebasing: raw[position...])) {
                        case .record(let recordSequence, let milliseconds, let payload, let recordSize):
                            let enough = take(recordSequence, milliseconds, UnsafeRawBufferPointer(
                                rebasing: raw[(position + payload.lowerBound)..<(position + payload.upperBound)]))
                            position += recordSize
                            if enough {
                                outcome = .done
                                return
                            }
                        case .truncated:
                            if position == 0 { outcome = .needsLargerRead(JournalFormat.recordHeaderSize + Int(raw.loadLittleEndian(UInt32.self, at: 0))) }
                            return
                        case .invalid(let reason):
                            outcome = .damaged(reason)
                            return
                        }
                    }
                }
                switch outcome {
                case .done: return count
                case .damaged(let reason):
                    // Written whole and checked at open, so this is damage
                    // since: report it, never serve it.
                    throw .foreignSegment(name: segment.name, reason: "is damaged at byte \(offset + position): \(reason)")
                case .needsLargerRead(let length):
                    guard let whole = segment.file.read(at: offset, count: length), whole.count == length else {
                        throw .io(SystemError("read", directory.pathOf(segment.name)))
                    }
                    let decoded = whole.withUnsafeBytes { JournalFormat.decodeRecord($0) }
                    guard case .record(let recordSequence, let milliseconds, let payload, let recordSize) = decoded else {
                        throw .foreignSegment(name: segment.name, reason: "is damaged at byte \(offset)")
                    }
                    let enough = whole.withUnsafeBytes { raw in
                        take(recordSequence, milliseconds, UnsafeRawBufferPointer(rebasing: raw[payload]))
                    }
                    if enough { return count }
                    offset += recordSize
                case .more:
                    offset += position
                }
            }
        }
        return count
    }

    private enum ReadOutcome {
        case more, done, damaged(String), needsLargerRead(Int)
    }

    /// Up to `count` of the newest records, oldest first, within about
    /// `maxBytes` of payload counted from the newest.
    public func newest(count: Int, maxBytes: Int) throws(JournalError) -> [JournalRecord] {
        guard count > 0 else { return [] }
        let (first, next) = (firstSequence, nextSequence)
        let from = next - min(UInt64(count), next - first)
        var records = try records(from: from, maxCount: count)
        var bytes = 0
        var keep = records.count
        while keep > 0 && bytes + records[keep - 1].payload.count <= maxBytes {
            bytes += records[keep - 1].payload.count
            keep -= 1
        }
        records.removeFirst(keep)
        return records
    }
}

private func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

extension JournalSegment {
    /// The first sequence actually present.
    var startSequence: UInt64 { index.first?.sequence ?? header.firstSequence }
}

/// Records for the journal, as the loop takes them from publishers: one
/// timestamp, consecutive sequences, payloads end to end.
public struct JournalBatch: Sendable {
    public var firstSequence: UInt64
    public var timestampMilliseconds: Int64
    public var payloads: [UInt8]
    public var lengths: [Int]

    public init(firstSequence: UInt64, timestampMilliseconds: Int64, payloads: [UInt8], lengths: [Int]) {
        self.firstSequence = firstSequence
        self.timestampMilliseconds = timestampMilliseconds
        self.payloads = payloads
        self.lengths = lengths
    }

    public var lastSequence: UInt64 { firstSequence + UInt64(lengths.count) - 1 }
}

/// Records encoded for one write at the end of the active segment
/// (`Journal.prepareAppend`). The bytes are in memory of their own that
/// stays put until the append is released, so the kernel may read them
/// while an asynchronous write is in flight.
public final class JournalAppend: @unchecked Sendable {
    struct Placement {
        var sequence: UInt64
        var timestampMilliseconds: Int64
        var offset: Int
        var size: Int
    }

    let segment: JournalSegment
    /// Where in the segment file the bytes go.
    public let offset: Int
    public let bytes: UnsafeMutableRawBufferPointer
    let placements: [Placement]
    public let sequences: ClosedRange<UInt64>

    /// Takes ownership of `bytes` (freed with this).
    init(segment: JournalSegment, offset: Int, bytes: UnsafeMutableRawBufferPointer, placements: [Placement]) {
        self.segment = segment
        self.offset = offset
        self.bytes = bytes
        self.placements = placements
        sequences = placements[0].sequence...placements[placements.count - 1].sequence
    }

    deinit { bytes.deallocate() }

    /// The segment file's descriptor, open for as long as this lives.
    public var descriptor: Int32 { segment.file.raw }
    public var segmentName: String { segment.name }
}

/// A segment kept open while its writer syncs it (retention may drop it
/// from the journal meanwhile; the descriptor stays valid).
public struct JournalSegmentHandle: @unchecked Sendable {
    let segment: JournalSegment
    public var descriptor: Int32 { segment.file.raw }
    public var name: String { segment.name }
}

public struct JournalRecord: Sendable, Equatable {
    public var sequence: UInt64
    public var timestampMilliseconds: Int64
    public var payload: [UInt8]
}

public struct DroppedSegment: Sendable, Equatable {
    public var name: String
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var records: Int
}

public struct JournalStatistics: Sendable, Equatable {
    public var segments: Int
    public var bytes: Int
    public var records: Int
    public var firstSequence: UInt64
    public var nextSequence: UInt64
}
