import CURing
import Glibc
import SecureOpsEngine

/// The subscribers' receive side on io_uring, the engine's own way: one
/// multishot recv per socket drawing from one shared pool of provided
/// buffers. Reading N sockets then costs no readiness round trip (an
/// `epoll_wait`, then a `recv` and a poll of each ready socket): the kernel
/// copies what arrives straight into a free buffer and posts one completion.
/// At 19,000 subscribers that readiness work was a sixth of the tool's core.
///
/// Tokens are the caller's dense subscriber indices. A second source of
/// wake-ups, the publishers' epoll descriptor, is watched with a multishot
/// poll so that one wait covers both.
final class SubscriberRing {
    private let ring: IOURing
    private let buffers: ProvidedBufferRing
    private var descriptors: [Int32] = []
    /// Receives that ended while the connection is still open (the buffer
    /// pool ran dry, or the kernel ended the multishot): armed again once
    /// this turn's buffers are back in the pool.
    private var toRearm: [Int] = []
    private var watchedDescriptor: Int32 = -1
    /// Receives that ended with -ENOBUFS (re-armed each time).
    private(set) var starvedReceives = 0

    private static let wakeToken: UInt64 = 1 << 62

    /// `bufferCount` × `bufferSize` bytes, allocated up front. Few, large
    /// buffers: the kernel hands them out in ring order, so the pool is the
    /// working set every received byte is copied into, and 8 MiB stays in
    /// cache where 64 MiB did not (measured: a quarter more copy time with
    /// 4,096 × 16 KiB). 64 KiB is secureopsd's largest send, so one read
    /// usually takes a whole send. A pool that runs dry costs a re-arm
    /// (`starvedReceives`), not data.
    init(bufferCount: Int = 128, bufferSize: Int = 64 << 10) throws {
        do {
            ring = try IOURing(entries: 4096, completionEntries: 65536)
            buffers = try ProvidedBufferRing(ring: ring, group: 7, count: bufferCount, bufferSize: bufferSize)
        } catch {
            throw BenchError("the io_uring receiver is not available: \(error); use --receiver epoll")
        }
    }

    /// Starts receiving on `fd` for subscriber `index`.
    func add(_ fd: Int32, index: Int) {
        if descriptors.count <= index {
            descriptors.append(contentsOf: repeatElement(-1, count: index + 1 - descriptors.count))
        }
        descriptors[index] = fd
        arm(index)
    }

    /// Stops delivering for subscriber `index`; the caller closes the socket.
    func remove(index: Int) {
        descriptors[index] = -1
    }

    /// Wakes a wait when `fd` (an epoll descriptor) becomes readable.
    func watch(_ fd: Int32) {
        watchedDescriptor = fd
        armWatch()
    }

    /// Submits what is queued, waits up to `timeoutMilliseconds` for a
    /// completion, and hands each over: `received` with the bytes (valid only
    /// during the call), `ended` when the peer hung up or the socket failed,
    /// `woken` when the watched descriptor is readable.
    @inline(__always)
    func turn(timeoutMilliseconds: Int32,
              received: (_ index: Int, _ bytes: UnsafeMutablePointer<UInt8>, _ count: Int) -> Void,
              ended: (_ index: Int, _ errorCode: Int32) -> Void,
              woken: () -> Void) {
        _ = ring.submitAndWait(timeoutNanoseconds: Int64(timeoutMilliseconds) * 1_000_000)
        _ = ring.drainCompletions { token, result, flags in
            if token == Self.wakeToken {
                if flags & CU_CQE_F_MORE == 0 && watchedDescriptor >= 0 { armWatch() }
                woken()
                return
            }
            let index = Int(token)
            let more = flags & CU_CQE_F_MORE != 0
            if result > 0 {
                let id = UInt16(truncatingIfNeeded: flags >> CU_CQE_BUFFER_SHIFT)
                let bytes = buffers.bytes(id: id, length: Int(result))
                if descriptors[index] >= 0 {
                    received(index, UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: UInt8.self), Int(result))
                }
                buffers.recycle(id: id)
                if !more && descriptors[index] >= 0 { toRearm.append(index) }
            } else if result == -ENOBUFS {
                starvedReceives += 1
                if descriptors[index] >= 0 { toRearm.append(index) }
            } else if result == -ECANCELED {
                return
            } else if descriptors[index] >= 0 {
                // 0: end of stream. Negative: the socket failed.
                ended(index, -result)
            }
        }
        buffers.publishReturns()
        if !toRearm.isEmpty {
            for index in toRearm where descriptors[index] >= 0 { arm(index) }
            toRearm.removeAll(keepingCapacity: true)
        }
    }

    private func arm(_ index: Int) {
        let sqe = ring.nextSubmission()
        io_uring_prep_recv_multishot(sqe, descriptors[index], nil, 0, 0)
        sqe.pointee.flags |= CU_IOSQE_BUFFER_SELECT
        sqe.pointee.buf_group = UInt16(buffers.group)
        sqe.pointee.user_data = UInt64(index)
    }

    private func armWatch() {
        let sqe = ring.nextSubmission()
        io_uring_prep_poll_multishot(sqe, watchedDescriptor, UInt32(POLLIN))
        sqe.pointee.user_data = Self.wakeToken
    }
}
