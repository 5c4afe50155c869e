import Testing
@_spi(Benchmarks) @testable import SecureOpsEngine

@Suite("Broadcast ring", .timeLimit(.minutes(2)))
struct BroadcastRingTests {
    func frame(_ sequence: Int, size: Int = 10) -> [UInt8] {
        let text = "\(sequence):"
        return Array(text.utf8) + Array(repeating: UInt8(ascii: "."), count: max(0, size - text.utf8.count - 1)) + [0x0A]
    }

    func append(_ ring: BroadcastRing, _ frames: [[UInt8]]) {
        for bytes in frames { bytes.withUnsafeBytes { ring.append($0) } }
    }

    /// All bytes a send from `from` to `to` would carry.
    func gathered(_ ring: BroadcastRing, from: UInt64, to: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        ring.forEachRange(from: from, to: to) { _, range in
            out += range
            return true
        }
        return out
    }

    @Test func numbersFramesFromOneAndReadsThemBack() {
        let ring = BroadcastRing(maxFrames: 100, maxBytes: 1 << 20)
        append(ring, (1...5).map { frame($0) })
        #expect(ring.firstSequence == 1)
        #expect(ring.nextSequence == 6)
        #expect(Array(ring.frame(3)) == frame(3))
    }

    @Test func evictsTheOldestBeyondTheCountLimit() {
        let ring = BroadcastRing(maxFrames: 4, maxBytes: 1 << 20)
        append(ring, (1...10).map { frame($0) })
        #expect(ring.count == 4)
        #expect(ring.firstSequence == 7)
        #expect(Array(ring.frame(7)) == frame(7))
    }

    @Test func evictsTheOldestBeyondTheByteLimitButKeepsTheNewest() {
        let ring = BroadcastRing(maxFrames: 100, maxBytes: 35)
        append(ring, (1...10).map { frame($0) })
        #expect(ring.retainedBytes <= 35)
        #expect(ring.count == 3)
        append(ring, [frame(11, size: 100)])
        #expect(ring.count == 1, "a frame larger than the byte limit is still retained alone")
    }

    @Test func aSendCoversWholeFramesWithinTheBudgetAndAtLeastOne() {
        let ring = BroadcastRing(maxFrames: 100, maxBytes: 1 << 20)
        append(ring, (1...10).map { frame($0) })
        #expect(ring.sendEnd(from: 1, maxBytes: 1000) == 11)
        #expect(ring.sendEnd(from: 1, maxBytes: 35) == 4)
        #expect(ring.sendEnd(from: 5, maxBytes: 3) == 6)
        #expect(gathered(ring, from: 2, to: 5) == frame(2) + frame(3) + frame(4))
    }

    @Test func framesSpanningChunksAreGatheredInOrderWithoutTearing() {
        let ring = BroadcastRing(maxFrames: 10_000, maxBytes: 1 << 30, chunkSize: 64)
        let frames = (1...100).map { frame($0, size: 7 + $0 % 20) }
        append(ring, frames)
        var expected: [UInt8] = []
        for index in 20..<80 { expected += frames[index] }
        var ranges = 0
        var out: [UInt8] = []
        ring.forEachRange(from: 21, to: 81) { _, range in
            ranges += 1
            out += range
            return true
        }
        #expect(out == expected)
        #expect(ranges > 1)
    }

    @Test func aChunkHeldByASendOutlivesItsEviction() {
        let ring = BroadcastRing(maxFrames: 2, maxBytes: 1 << 20, chunkSize: 32)
        append(ring, [frame(1, size: 30)])
        var held: BroadcastChunk?
        var heldBytes: UnsafeRawBufferPointer?
        ring.forEachRange(from: 1, to: 2) { chunk, range in
            held = chunk
            heldBytes = range
            return true
        }
        weak var weakChunk = held
        append(ring, (2...6).map { frame($0, size: 30) })
        #expect(ring.firstSequence == 5)
        #expect(weakChunk != nil)
        #expect(Array(heldBytes!) == frame(1, size: 30), "evicted bytes must stay intact while referenced")
        held = nil
        #expect(weakChunk == nil, "the chunk is freed once the send lets go")
    }

    @Test func shrinkingTheLimitsEvictsAtOnce() {
        let ring = BroadcastRing(maxFrames: 100, maxBytes: 1 << 20)
        append(ring, (1...50).map { frame($0) })
        ring.setLimits(maxFrames: 10, maxBytes: 1 << 20)
        #expect(ring.count == 10)
        #expect(ring.firstSequence == 41)
    }

    @Test func anEvictedChunksSlabIsReusedByTheNextChunk() {
        let ring = BroadcastRing(maxFrames: 4, maxBytes: 1 << 20, chunkSize: 64)
        // Each 60-byte frame fills its own 64-byte chunk; with four
        // retained, every append evicts one chunk and needs another.
        append(ring, (1...4).map { frame($0, size: 60) })
        #expect(ring.chunkPool.spareCount == 0)
        append(ring, [frame(5, size: 60)]) // evicts frame 1: its slab is spare
        #expect(ring.chunkPool.spareCount == 1)
        append(ring, [frame(6, size: 60)]) // takes it, evicts frame 2's
        #expect(ring.chunkPool.spareCount == 1)
        #expect(gathered(ring, from: 3, to: 7) == (3...6).flatMap { frame($0, size: 60) })
    }

    /// DESIGN.md invariant 1 with slab reuse: a chunk an in-flight send still
    /// holds keeps its bytes however many chunks are evicted and reused.
    @Test func aChunkStillHeldBySendIsNeverReusedAfterEviction() throws {
        let ring = BroadcastRing(maxFrames: 2, maxBytes: 1 << 20, chunkSize: 64)
        append(ring, [frame(1, size: 60)])
        var held: BroadcastChunk?
        ring.forEachRange(from: 1, to: 2) { chunk, _ in
            held = chunk
            return false
        }
        append(ring, (2...40).map { frame($0, size: 60) }) // 39 evictions, slabs recycled between them
        let chunk = try #require(held)
        #expect(Array(chunk.slice(from: chunk.startOffset, to: chunk.startOffset + 60)) == frame(1, size: 60))
        #expect(gathered(ring, from: 39, to: 41) == (39...40).flatMap { frame($0, size: 60) })
    }

    @Test func theSlabPoolKeepsOnlyItsOwnSizeAndOnlyUpToItsLimit() {
        let pool = ChunkStoragePool(slabSize: 128, maximumSpare: 1)
        let first = pool.take(byteCount: 128)
        let second = pool.take(byteCount: 128)
        let odd = pool.take(byteCount: 4096)
        pool.recycle(first, byteCount: 128)
        pool.recycle(second, byteCount: 128) // over the limit: freed
        pool.recycle(odd, byteCount: 4096) // not a slab: freed
        #expect(pool.take(byteCount: 128) == first)
        let fresh = pool.take(byteCount: 128)
        #expect(fresh != first)
        pool.recycle(fresh, byteCount: 128)
    }

    @Test func growsItsIndexPastTheInitialCapacity() {
        let ring = BroadcastRing(maxFrames: 5000, maxBytes: 1 << 30)
        append(ring, (1...3000).map { frame($0) })
        #expect(ring.count == 3000)
        #expect(Array(ring.frame(1)) == frame(1))
        #expect(Array(ring.frame(3000)) == frame(3000))
    }
}

@Suite("Operation tags", .timeLimit(.minutes(2)))
struct OperationTagTests {
    @Test func packsKindGenerationAndSlotIntoUserData() {
        let tag = OperationTag(kind: .send, slot: 123_456, generation: 0xAB_CDEF)
        #expect(OperationTag(userData: tag.userData) == tag)
    }

    @Test func aStaleGenerationNeverMatchesTheSlotsNewOne() {
        let old = OperationTag(kind: .receive, slot: 7, generation: 41)
        let new = OperationTag(kind: .receive, slot: 7, generation: 42)
        #expect(old.userData != new.userData)
    }
}
