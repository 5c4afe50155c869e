import SecureOpsSystem
import Synchronization

/// A slab of encoded frames laid end to end. Frames are only ever appended
/// past `used`; bytes below `used` never change again, so the kernel may read
/// them from an in-flight send while the loop appends more.
///
/// Reference counted: the broadcast ring holds each chunk while it retains
/// any of its frames, and every in-flight send holds the chunks its iovecs
/// point into, so a frame evicted from the ring outlives its eviction for as
/// long as a send still reads it (docs/DESIGN.md, invariant 1).
@_spi(Benchmarks) public final class BroadcastChunk {
    let storage: UnsafeMutableRawPointer
    let capacity: Int
    /// Global byte offset of `storage[0]` in the broadcast stream.
    let startOffset: UInt64
    @exclusivity(unchecked) private(set) var used = 0
    private let pool: ChunkStoragePool

    init(capacity: Int, startOffset: UInt64, pool: ChunkStoragePool) {
        self.capacity = capacity
        self.startOffset = startOffset
        self.pool = pool
        storage = pool.take(byteCount: capacity)
    }

    deinit {
        // The last reference may be an in-flight send's, released on
        // whichever thread completes it; the pool is thread-safe.
        pool.recycle(storage, byteCount: capacity)
    }

    var endOffset: UInt64 { startOffset + UInt64(used) }
    var spaceLeft: Int { capacity - used }

    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= spaceLeft)
        if let base = bytes.baseAddress {
            (storage + used).copyMemory(from: base, byteCount: bytes.count)
        }
        used += bytes.count
    }

    /// The stored bytes at global offsets `[from, to)`; both must fall inside.
    @inline(__always)
    func slice(from: UInt64, to: UInt64) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + Int(from - startOffset), count: Int(to - from))
    }
}

/// Slabs for broadcast chunks, reused instead of freed.
///
/// Under steady publishing the ring frees its oldest chunk as often as it
/// allocates a new one. Left to malloc, those 256 KiB blocks and the small
/// allocations between them fragment the heap, and the process settled at
/// about twice the retained bytes (a 16 MiB history held 34 MiB of RSS in a
/// soak). Handing the evicted chunk's slab to the next chunk keeps RSS at
/// the retained bytes plus a few spare slabs.
final class ChunkStoragePool: Sendable {
    let slabSize: Int
    let maximumSpare: Int
    private let spare = Locked<[Slab]>([])

    /// A slab in the spare list: owned by the pool alone until taken.
    private struct Slab: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
    }

    init(slabSize: Int, maximumSpare: Int = 8) {
        self.slabSize = slabSize
        self.maximumSpare = maximumSpare
    }

    deinit {
        spare.withLock { slabs in
            for slab in slabs { slab.pointer.deallocate() }
        }
    }

    var spareCount: Int { spare.withLock { $0.count } }

    /// A slab of `byteCount` bytes, 64-byte aligned; a spare one when the
    /// size is the pool's.
    func take(byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount == slabSize, let slab = spare.withLock({ $0.popLast() }) { return slab.pointer }
        return .allocate(byteCount: byteCount, alignment: 64)
    }

    func recycle(_ slab: UnsafeMutableRawPointer, byteCount: Int) {
        let spareSlab = Slab(pointer: slab)
        let kept = byteCount == slabSize && spare.withLock { slabs in
            guard slabs.count < maximumSpare else { return false }
            slabs.append(spareSlab)
            return true
        }
        if !kept { slab.deallocate() }
    }
}
