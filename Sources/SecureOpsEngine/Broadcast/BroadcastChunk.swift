/// A slab of encoded frames laid end to end. Frames are only ever appended
/// past `used`; bytes below `used` never change again, so the kernel may read
/// them from an in-flight send while the loop appends more.
///
/// Reference counted: the broadcast ring holds each chunk while it retains
/// any of its frames, and every in-flight send holds the chunks its iovecs
/// point into, so a frame evicted from the ring outlives its eviction for as
/// long as a send still reads it (DESIGN.md, invariant 1).
@_spi(Benchmarks) public final class BroadcastChunk {
    let storage: UnsafeMutableRawPointer
    let capacity: Int
    /// Global byte offset of `storage[0]` in the broadcast stream.
    let startOffset: UInt64
    @exclusivity(unchecked) private(set) var used = 0

    init(capacity: Int, startOffset: UInt64) {
        self.capacity = capacity
        self.startOffset = startOffset
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit {
        storage.deallocate()
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
