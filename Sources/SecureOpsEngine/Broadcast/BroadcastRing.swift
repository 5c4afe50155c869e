/// The bounded history of broadcast frames, each encoded once.
///
/// Frames are numbered by sequence (from 1, strictly increasing) and stored
/// end to end in `BroadcastChunk`s, so that everything a subscriber has not
/// yet received, from its cursor to the head, is one or two contiguous byte
/// ranges: one `sendmsg` with a couple of iovecs covers it, whatever the
/// number of frames. The ring keeps the newest frames within a count and a
/// byte limit; a subscriber whose cursor falls below `firstSequence` has
/// lagged. Owned by the loop thread.
@_spi(Benchmarks) public final class BroadcastRing {
    struct Entry {
        /// Global byte offset of the frame's first byte.
        var offset: UInt64
        var length: UInt32
    }

    @exclusivity(unchecked) private(set) var maxFrames: Int
    @exclusivity(unchecked) private(set) var maxBytes: Int
    let chunkSize: Int

    /// The oldest retained sequence (== `nextSequence` when empty).
    @exclusivity(unchecked) @_spi(Benchmarks) public private(set) var firstSequence: UInt64 = 1
    /// The sequence the next appended frame must carry.
    @exclusivity(unchecked) @_spi(Benchmarks) public private(set) var nextSequence: UInt64 = 1
    @exclusivity(unchecked) private(set) var retainedBytes = 0
    /// Global offset just past the newest frame.
    @exclusivity(unchecked) private(set) var endOffset: UInt64 = 0

    @exclusivity(unchecked) private var entries: UnsafeMutablePointer<Entry>
    @exclusivity(unchecked) private var entryCapacity: Int
    /// Chunks holding retained frames, oldest first (a few hundred at most).
    @exclusivity(unchecked) private var chunks: [BroadcastChunk] = []
    let chunkPool: ChunkStoragePool

    /// `nextSequence`: the sequence of the first frame appended (a stream
    /// kept in a journal continues where it stopped).
    @_spi(Benchmarks) public init(maxFrames: Int, maxBytes: Int, chunkSize: Int = 256 * 1024, nextSequence: UInt64 = 1) {
        precondition(maxFrames > 0 && maxBytes > 0 && nextSequence > 0)
        firstSequence = nextSequence
        self.nextSequence = nextSequence
        self.maxFrames = maxFrames
        self.maxBytes = maxBytes
        self.chunkSize = chunkSize
        chunkPool = ChunkStoragePool(slabSize: chunkSize)
        entryCapacity = 1024
        entries = .allocate(capacity: entryCapacity)
    }

    deinit {
        entries.deallocate()
    }

    var count: Int { Int(nextSequence - firstSequence) }
    var isEmpty: Bool { nextSequence == firstSequence }
    var lastSequence: UInt64 { nextSequence - 1 }

    /// Changes the limits; frames beyond the new ones are evicted now.
    func setLimits(maxFrames: Int, maxBytes: Int) {
        self.maxFrames = max(1, maxFrames)
        self.maxBytes = max(1, maxBytes)
        evictOverLimits()
    }

    /// Appends the frame with sequence `nextSequence`.
    @_spi(Benchmarks) public func append(_ frame: UnsafeRawBufferPointer) {
        precondition(frame.count > 0 && frame.count <= Int(UInt32.max))
        if count == entryCapacity { growEntries() }
        let chunk: BroadcastChunk
        if let tail = chunks.last, tail.spaceLeft >= frame.count {
            chunk = tail
        } else {
            chunk = BroadcastChunk(capacity: max(chunkSize, frame.count), startOffset: endOffset, pool: chunkPool)
            chunks.append(chunk)
        }
        chunk.append(frame)
        entries[slot(nextSequence)] = Entry(offset: endOffset, length: UInt32(frame.count))
        endOffset += UInt64(frame.count)
        retainedBytes += frame.count
        nextSequence += 1
        evictOverLimits()
    }

    @inline(__always)
    func entry(_ sequence: UInt64) -> Entry {
        precondition(sequence >= firstSequence && sequence < nextSequence)
        return entries[slot(sequence)]
    }

    /// Global offset where frame `sequence` starts; `endOffset` for `nextSequence`.
    @inline(__always)
    func offset(of sequence: UInt64) -> UInt64 {
        sequence == nextSequence ? endOffset : entry(sequence).offset
    }

    /// The bytes of one retained frame.
    func frame(_ sequence: UInt64) -> UnsafeRawBufferPointer {
        let entry = entry(sequence)
        let chunk = chunks[chunkIndex(containing: entry.offset)]
        return chunk.slice(from: entry.offset, to: entry.offset + UInt64(entry.length))
    }

    /// The end of a send that starts at `from`: as many whole frames as fit
    /// in `maxBytes`, and at least one. `from` must be retained and below
    /// `nextSequence`.
    @_spi(Benchmarks) public func sendEnd(from: UInt64, maxBytes: Int) -> UInt64 {
        let start = offset(of: from)
        if endOffset - start <= UInt64(maxBytes) { return nextSequence }
        // Binary search the last sequence whose start lies within the budget.
        var low = from + 1
        var high = nextSequence
        while low < high {
            let mid = low + (high - low + 1) / 2
            if offset(of: mid) - start <= UInt64(maxBytes) { low = mid } else { high = mid - 1 }
        }
        return max(low, from + 1)
    }

    /// Calls `body` with each contiguous byte range (and the chunk holding it)
    /// that frames `[from, to)` occupy, in order: one range per chunk spanned.
    @_spi(Benchmarks) public func forEachRange(from: UInt64, to: UInt64, _ body: (BroadcastChunk, UnsafeRawBufferPointer) -> Bool) {
        guard from < to else { return }
        let start = offset(of: from)
        let end = offset(of: to)
        var index = chunkIndex(containing: start)
        var position = start
        while position < end && index < chunks.count {
            let chunk = chunks[index]
            let stop = min(end, chunk.endOffset)
            if stop > position {
                if !body(chunk, chunk.slice(from: position, to: stop)) { return }
                position = stop
            }
            index += 1
        }
    }

    // MARK: - Internals

    @inline(__always)
    private func slot(_ sequence: UInt64) -> Int {
        Int(sequence & UInt64(entryCapacity - 1))
    }

    private func chunkIndex(containing offset: UInt64) -> Int {
        var low = 0
        var high = chunks.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if chunks[mid].startOffset <= offset { low = mid } else { high = mid - 1 }
        }
        return low
    }

    private func evictOverLimits() {
        while count > 1 && (count > maxFrames || retainedBytes > maxBytes) {
            retainedBytes -= Int(entries[slot(firstSequence)].length)
            firstSequence += 1
        }
        // Drop chunks that no retained frame lives in any more. In-flight
        // sends keep their own references, so this never frees bytes the
        // kernel may still read.
        let firstOffset = offset(of: firstSequence)
        var unused = 0
        while unused < chunks.count - 1 && chunks[unused].endOffset <= firstOffset {
            unused += 1
        }
        if unused > 0 { chunks.removeFirst(unused) }
    }

    private func growEntries() {
        let newCapacity = entryCapacity * 2
        let newEntries = UnsafeMutablePointer<Entry>.allocate(capacity: newCapacity)
        var sequence = firstSequence
        while sequence < nextSequence {
            newEntries[Int(sequence & UInt64(newCapacity - 1))] = entries[slot(sequence)]
            sequence += 1
        }
        entries.deallocate()
        entries = newEntries
        entryCapacity = newCapacity
    }
}
