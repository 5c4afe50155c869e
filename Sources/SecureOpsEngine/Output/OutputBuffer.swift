import Glibc

/// Response bytes queued for one connection, in heap memory that does not
/// move while a send reads it.
///
/// A connection appends to its current buffer; when a send starts, the
/// buffer is moved into that send (ownership passes to the kernel until the
/// completion), and new responses go into a fresh buffer from the pool. So a
/// buffer is never grown or rewritten while the kernel may read it.
final class OutputBuffer {
    @exclusivity(unchecked) private(set) var base: UnsafeMutableRawPointer
    @exclusivity(unchecked) private(set) var capacity: Int
    @exclusivity(unchecked) private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        base.deallocate()
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(to: count + bytes.count) }
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    func reset() {
        count = 0
    }

    private func grow(to needed: Int) {
        var newCapacity = capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        let newBase = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        newBase.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }
}

/// Recycles output buffers so a request/response round trip allocates
/// nothing in steady state. Bounded: buffers beyond `limit`, and buffers
/// that grew large, are freed.
@_spi(Benchmarks) public final class OutputBufferPool {
    @exclusivity(unchecked) private var free: [OutputBuffer] = []
    private let initialCapacity: Int
    private let limit: Int
    private let keepCapacity: Int

    @_spi(Benchmarks) public init(initialCapacity: Int = 512, limit: Int = 256, keepCapacity: Int = 64 << 10) {
        self.initialCapacity = initialCapacity
        self.limit = limit
        self.keepCapacity = keepCapacity
    }

    @inline(__always)
    func take() -> OutputBuffer {
        free.popLast() ?? OutputBuffer(capacity: initialCapacity)
    }

    @inline(__always)
    func recycle(_ buffer: OutputBuffer) {
        guard free.count < limit, buffer.capacity <= keepCapacity else { return }
        buffer.reset()
        free.append(buffer)
    }
}
