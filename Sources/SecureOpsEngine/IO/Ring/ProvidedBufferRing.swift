import CURing
import Glibc

/// A registered ring of receive buffers the kernel picks from (buffer group).
///
/// Every connection's multishot recv draws from this one shared pool, so
/// memory does not grow with the number of connections. A buffer goes back
/// the moment its bytes have been split into lines (a partial tail line is
/// copied out first), which keeps the pool full in steady state. When it runs
/// dry the kernel ends multishot recvs with `-ENOBUFS`; the loop re-arms them
/// after returning buffers.
package final class ProvidedBufferRing {
    package let group: Int32
    package let bufferSize: Int
    package let count: Int
    private let ring: UnsafeMutablePointer<io_uring>
    private let bufferRing: UnsafeMutablePointer<io_uring_buf_ring>
    private let memory: UnsafeMutableRawPointer
    private let mask: UInt32
    @exclusivity(unchecked) private var pendingReturns: Int32 = 0

    package init(ring: IOURing, group: Int32, count: Int, bufferSize: Int) throws(EngineError) {
        precondition(count > 0 && count & (count - 1) == 0 && count <= 32768, "buffer count must be a power of two ≤ 32768")
        self.ring = ring.ring
        self.group = group
        self.count = count
        self.bufferSize = bufferSize
        var error: Int32 = 0
        guard let bufferRing = cu_setup_buf_ring(ring.ring, UInt32(count), group, &error) else {
            throw EngineError.ioUringUnavailable(
                "registering the provided-buffer ring failed: \(String(cString: strerror(-error))) (needs Linux 5.19 or later)")
        }
        self.bufferRing = bufferRing
        mask = UInt32(count - 1)
        memory = UnsafeMutableRawPointer.allocate(byteCount: count * bufferSize, alignment: 4096)
        for id in 0..<count {
            cu_buf_ring_add(bufferRing, memory + id * bufferSize, UInt32(bufferSize), UInt16(id), mask, Int32(id))
        }
        cu_buf_ring_advance(bufferRing, Int32(count))
    }

    deinit {
        cu_free_buf_ring(ring, bufferRing, UInt32(count), group)
        memory.deallocate()
    }

    /// The bytes the kernel wrote into buffer `id`.
    @inline(__always)
    package func bytes(id: UInt16, length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: memory + Int(id) * bufferSize, count: length)
    }

    /// Gives buffer `id` back to the kernel. Made visible by `publishReturns`.
    @inline(__always)
    package func recycle(id: UInt16) {
        cu_buf_ring_add(bufferRing, memory + Int(id) * bufferSize, UInt32(bufferSize), id, mask, pendingReturns)
        pendingReturns += 1
    }

    /// Publishes recycled buffers to the kernel with one tail update.
    @inline(__always)
    package func publishReturns() {
        if pendingReturns > 0 {
            cu_buf_ring_advance(bufferRing, pendingReturns)
            pendingReturns = 0
        }
    }
}
