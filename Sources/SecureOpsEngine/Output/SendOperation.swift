import Glibc

/// Everything one in-flight `sendmsg` reads: its header and iovecs (in
/// memory that does not move), the response buffers it drains and the
/// broadcast chunks it points into. The operation owns them until its
/// completion is reaped, which is what keeps a frame alive after the ring
/// evicts it, and a response buffer safe from reuse (docs/DESIGN.md, invariant 1).
///
/// A partial send is normal on a stream socket: `advance` moves past what
/// went out and the same operation is submitted again for the rest. Frames
/// are never re-read from the ring, so a send can never tear a frame.
@_spi(Benchmarks) public final class SendOperation {
    static let maxIovecs = 8

    let header: UnsafeMutablePointer<msghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    @exclusivity(unchecked) @_spi(Benchmarks) public private(set) var iovecCount = 0
    @exclusivity(unchecked) private var firstPending = 0
    @exclusivity(unchecked) @_spi(Benchmarks) public private(set) var remainingBytes = 0
    @exclusivity(unchecked) private(set) var buffers: [OutputBuffer] = []
    @exclusivity(unchecked) private var chunks: [BroadcastChunk] = []
    /// Bytes of responses (not broadcast frames) this send still carries.
    @exclusivity(unchecked) private(set) var responseBytes = 0

    @_spi(Benchmarks) public init() {
        header = .allocate(capacity: 1)
        header.initialize(to: msghdr())
        iovecs = .allocate(capacity: Self.maxIovecs)
        buffers.reserveCapacity(2)
        chunks.reserveCapacity(2)
    }

    deinit {
        header.deallocate()
        iovecs.deallocate()
    }

    var isEmpty: Bool { iovecCount == 0 }
    @_spi(Benchmarks) public var hasRoom: Bool { iovecCount < Self.maxIovecs }

    func add(_ buffer: OutputBuffer) {
        precondition(hasRoom)
        guard buffer.count > 0 else { return }
        buffers.append(buffer)
        iovecs[iovecCount] = iovec(iov_base: buffer.base, iov_len: buffer.count)
        iovecCount += 1
        remainingBytes += buffer.count
        responseBytes += buffer.count
    }

    @_spi(Benchmarks) public func add(_ chunk: BroadcastChunk, range: UnsafeRawBufferPointer) {
        precondition(hasRoom)
        guard range.count > 0 else { return }
        if chunks.last !== chunk { chunks.append(chunk) }
        iovecs[iovecCount] = iovec(iov_base: UnsafeMutableRawPointer(mutating: range.baseAddress), iov_len: range.count)
        iovecCount += 1
        remainingBytes += range.count
    }

    /// Points the header at the iovecs not yet sent.
    @_spi(Benchmarks) public func prepareHeader() {
        header.pointee.msg_iov = iovecs + firstPending
        header.pointee.msg_iovlen = iovecCount - firstPending
    }

    /// The only range left to send, when there is exactly one.
    var singlePendingRange: (base: UnsafeMutableRawPointer, count: Int)? {
        guard iovecCount - firstPending == 1, let base = iovecs[firstPending].iov_base else { return nil }
        return (base, iovecs[firstPending].iov_len)
    }

    /// Accounts for `sent` bytes; returns true when everything went out.
    func advance(by sent: Int) -> Bool {
        var left = sent
        remainingBytes -= sent
        while left > 0 && firstPending < iovecCount {
            let length = iovecs[firstPending].iov_len
            if left >= length {
                left -= length
                firstPending += 1
            } else {
                iovecs[firstPending].iov_base += left
                iovecs[firstPending].iov_len -= left
                left = 0
            }
        }
        return remainingBytes == 0
    }

    /// Releases what the send held, for reuse.
    @_spi(Benchmarks) public func reset(recyclingInto pool: OutputBufferPool) {
        for buffer in buffers { pool.recycle(buffer) }
        buffers.removeAll(keepingCapacity: true)
        chunks.removeAll(keepingCapacity: true)
        iovecCount = 0
        firstPending = 0
        remainingBytes = 0
        responseBytes = 0
    }
}

/// Recycles send operations (bounded), so a send allocates nothing in
/// steady state. Operations are only created while that many sends are in
/// flight at once, so the bound costs nothing until it is needed.
final class SendOperationPool {
    @exclusivity(unchecked) private var free: [SendOperation] = []
    private let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    @inline(__always)
    func take() -> SendOperation {
        free.popLast() ?? SendOperation()
    }

    @inline(__always)
    func recycle(_ operation: SendOperation, buffers: OutputBufferPool) {
        operation.reset(recyclingInto: buffers)
        if free.count < limit { free.append(operation) }
    }
}
