import CURing
import Glibc
import Logging

/// The io_uring backend: every operation the engine performs, as
/// submissions on one ring, and every completion, mapped back to the
/// server's events (docs/DESIGN.md, "Backends").
///
/// | server asks     | submission                                            |
/// |-----------------|-------------------------------------------------------|
/// | armAccept       | multishot `accept` (`SOCK_CLOEXEC`)                   |
/// | armReceive      | multishot `recv` from the provided-buffer group       |
/// | send            | `send` for one range, else `sendmsg` (`MSG_NOSIGNAL`) |
/// | armHangup       | `poll_add(POLLHUP \| POLLERR)`                        |
/// | writeFile       | `write` at an offset (the journal), linked to an      |
/// |                 | `fsync` when the sync must follow                     |
/// | syncFile        | `fsync(IORING_FSYNC_DATASYNC)` (the journal)          |
/// | cancel…         | `async_cancel` by user data, or by fd (`CANCEL_ALL`)  |
/// | (wake-ups)      | `read` of the inbox's eventfd, re-armed each time     |
///
/// `user_data` packs the operation kind with the connection's slot and
/// generation (`OperationTag`), so a completion for a closed connection
/// can never act on the one that reused its slot (invariant 2). Created on
/// the loop thread and used only there (`SINGLE_ISSUER`, `DEFER_TASKRUN`).
final class IOURingBackend: FileWritingBackend {
    let ring: IOURing
    let receiveBuffers: ProvidedBufferRing
    private let logger: Logger
    private let wakeFD: Int32
    private let wakeBuffer: UnsafeMutablePointer<UInt64>
    @exclusivity(unchecked) private var wakeArmed = false
    @exclusivity(unchecked) private var stopping = false
    /// Listeners whose multishot accept is in the kernel.
    @exclusivity(unchecked) private var acceptsArmed: Set<Int> = []

    /// The operations the engine submits; a kernel without one of them
    /// cannot serve it (`auto` then falls back to epoll).
    static let requiredOperations: [(name: String, code: Int32)] = [
        ("ACCEPT", CU_OP_ACCEPT), ("RECV", CU_OP_RECV), ("SEND", CU_OP_SEND), ("SENDMSG", CU_OP_SENDMSG),
        ("READ", CU_OP_READ), ("POLL_ADD", CU_OP_POLL_ADD), ("ASYNC_CANCEL", CU_OP_ASYNC_CANCEL),
        ("WRITE", CU_OP_WRITE), ("FSYNC", CU_OP_FSYNC),
    ]

    init(configuration: EngineConfiguration, wakeFD: Int32, logger: Logger) throws(EngineError) {
        self.logger = logger
        self.wakeFD = wakeFD
        let ring = try IOURing(
            entries: configuration.submissionQueueEntries,
            completionEntries: configuration.completionQueueEntries, logger: logger)
        self.ring = ring
        let missing = Self.requiredOperations.filter { !ring.supports(opcode: $0.code) }.map(\.name)
        guard missing.isEmpty else {
            throw .ioUringUnavailable("this kernel's io_uring lacks \(missing.joined(separator: ", ")), which the engine uses (Linux 6.1 or later has them all)")
        }
        receiveBuffers = try ProvidedBufferRing(
            ring: ring, group: 0, count: configuration.receiveBufferCount,
            bufferSize: configuration.receiveBufferSize)
        wakeBuffer = .allocate(capacity: 1)
        armWake()
    }

    deinit {
        wakeBuffer.deallocate()
    }

    var kind: IOBackendKind { .ioUring }
    var description: String { "io_uring (\(setupFlags))" }
    /// The setup flags the kernel accepted ("SINGLE_ISSUER|DEFER_TASKRUN").
    var setupFlags: String { ring.setup.name }
    var rearmBatchAfterStarvation: Int { max(1, receiveBuffers.count / 2) }
    var overflowCount: Int { ring.overflowCount }

    // MARK: - Operations

    func armAccept(listener: Int, fd: Int32) {
        assert(!acceptsArmed.contains(listener), "accept armed twice")
        let sqe = ring.nextSubmission()
        io_uring_prep_multishot_accept(sqe, fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        sqe.pointee.user_data = OperationTag(kind: .accept, slot: UInt32(listener)).userData
        acceptsArmed.insert(listener)
    }

    func cancelAccept(listener: Int) {
        guard acceptsArmed.contains(listener) else { return }
        cancel(OperationTag(kind: .accept, slot: UInt32(listener)).userData)
    }

    func armReceive(_ connection: ConnectionID, fd: Int32) {
        let sqe = ring.nextSubmission()
        io_uring_prep_recv_multishot(sqe, fd, nil, 0, 0)
        sqe.pointee.flags |= CU_IOSQE_BUFFER_SELECT
        sqe.pointee.buf_group = UInt16(receiveBuffers.group)
        sqe.pointee.user_data = OperationTag(kind: .receive, connection).userData
    }

    func cancelReceive(_ connection: ConnectionID, fd: Int32) {
        cancel(OperationTag(kind: .receive, connection).userData)
    }

    func send(_ operation: SendOperation, for connection: ConnectionID, fd: Int32) {
        operation.prepareHeader()
        let sqe = ring.nextSubmission()
        if let single = operation.singlePendingRange {
            // One contiguous range (the common case for a subscriber): a
            // plain send spares the kernel copying in a msghdr and iovec.
            io_uring_prep_send(sqe, fd, single.base, single.count, Int32(MSG_NOSIGNAL))
        } else {
            io_uring_prep_sendmsg(sqe, fd, operation.header, UInt32(MSG_NOSIGNAL))
        }
        sqe.pointee.user_data = OperationTag(kind: .send, connection).userData
    }

    func armHangup(_ connection: ConnectionID, fd: Int32) {
        let sqe = ring.nextSubmission()
        io_uring_prep_poll_add(sqe, fd, UInt32(POLLHUP | POLLERR))
        sqe.pointee.user_data = OperationTag(kind: .hangupPoll, connection).userData
    }

    func cancelHangup(_ connection: ConnectionID, fd: Int32) {
        cancel(OperationTag(kind: .hangupPoll, connection).userData)
    }

    func cancelAll(_ connection: ConnectionID, fd: Int32) {
        let sqe = ring.nextSubmission()
        io_uring_prep_cancel_fd(sqe, fd, CU_ASYNC_CANCEL_ALL)
        sqe.pointee.user_data = OperationTag(kind: .cancel).userData
        sqe.pointee.flags |= CU_IOSQE_CQE_SKIP_SUCCESS
    }

    func release(fd: Int32) {}

    func writeFile(fd: Int32, bytes: UnsafeRawBufferPointer, offset: Int, thenSync: Bool) {
        if thenSync { ring.reserveSubmissions(2) }
        let sqe = ring.nextSubmission()
        io_uring_prep_write(sqe, fd, bytes.baseAddress, UInt32(bytes.count), UInt64(offset))
        sqe.pointee.user_data = OperationTag(kind: .fileWrite).userData
        // Straight to io_uring's workers: a buffered write to ext4 cannot
        // complete without blocking, so the kernel's first, non-blocking
        // try only costs the loop (BENCHMARKS.md, "Who writes the journal").
        sqe.pointee.flags |= CU_IOSQE_ASYNC
        // A short write fails the link: the sync then ends with -ECANCELED.
        if thenSync {
            sqe.pointee.flags |= CU_IOSQE_IO_LINK
            syncFile(fd: fd)
        }
    }

    func syncFile(fd: Int32) {
        let sqe = ring.nextSubmission()
        io_uring_prep_fsync(sqe, fd, CU_FSYNC_DATASYNC)
        sqe.pointee.user_data = OperationTag(kind: .fileSync).userData
    }

    private func cancel(_ userData: UInt64) {
        let sqe = ring.nextSubmission()
        io_uring_prep_cancel64(sqe, userData, 0)
        sqe.pointee.user_data = OperationTag(kind: .cancel).userData
        sqe.pointee.flags |= CU_IOSQE_CQE_SKIP_SUCCESS
    }

    private func armWake() {
        guard !wakeArmed else { return }
        let sqe = ring.nextSubmission()
        io_uring_prep_read(sqe, wakeFD, wakeBuffer, 8, 0)
        sqe.pointee.user_data = OperationTag(kind: .wake).userData
        wakeArmed = true
    }

    // MARK: - Waiting and completions

    func wait(timeoutNanoseconds: Int64, events: IOEvents) {
        let rc = ring.submitAndWait(timeoutNanoseconds: timeoutNanoseconds)
        if rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN {
            logger.error("io_uring_submit_and_wait failed: \(String(cString: strerror(-rc)))")
        }
        events.waitReturned()
        _ = ring.drainCompletions { userData, result, flags in
            complete(userData: userData, result: result, flags: flags, events: events)
        }
        receiveBuffers.publishReturns()
    }

    /// One completion, as the server's event. The receive buffer a
    /// completion carries goes back to the kernel right after the server
    /// has seen its bytes.
    @inline(__always)
    private func complete(userData: UInt64, result: Int32, flags: UInt32, events: IOEvents) {
        guard let tag = OperationTag(userData: userData) else {
            assertionFailure("a completion with user data \(userData) this backend never submitted")
            return
        }
        let more = flags & CU_CQE_F_MORE != 0
        switch tag.kind {
        case .receive:
            let connection = tag.connection
            if result > 0 {
                let id = UInt16(truncatingIfNeeded: flags >> CU_CQE_BUFFER_SHIFT)
                events.received(connection, receiveBuffers.bytes(id: id, length: Int(result)))
                receiveBuffers.recycle(id: id)
                if !more { events.receiveEnded(connection, .interrupted) }
            } else {
                if flags & CU_CQE_F_BUFFER != 0 {
                    receiveBuffers.recycle(id: UInt16(truncatingIfNeeded: flags >> CU_CQE_BUFFER_SHIFT))
                }
                assert(!more, "a multishot receive goes on after an error or end of stream")
                switch -result {
                case 0: events.receiveEnded(connection, .endOfStream)
                case ENOBUFS: events.receiveEnded(connection, .starved)
                case ECANCELED: events.receiveEnded(connection, .cancelled)
                case let code: events.receiveEnded(connection, .failed(code))
                }
            }
        case .send:
            events.sendCompleted(tag.connection, result: result)
        case .hangupPoll:
            events.hangupCompleted(tag.connection, result: result)
        case .accept:
            let listener = Int(tag.slot)
            if result >= 0 {
                events.accepted(result, listener: listener)
            } else if result != -ECANCELED {
                events.acceptFailed(listener: listener, errno: -result)
            }
            if !more {
                acceptsArmed.remove(listener)
                events.acceptEnded(listener: listener)
            }
        case .fileWrite:
            events.fileWriteCompleted(result: result)
        case .fileSync:
            events.fileSyncCompleted(result: result)
        case .wake:
            wakeArmed = false
            if !stopping { armWake() }
        case .cancel:
            break
        }
    }

    func shutDown(events: IOEvents) {
        stopping = true
        for listener in acceptsArmed { cancelAccept(listener: listener) }
        if wakeArmed { cancel(OperationTag(kind: .wake).userData) }
        var attempts = 0
        while (!acceptsArmed.isEmpty || wakeArmed) && attempts < 50 {
            wait(timeoutNanoseconds: 20_000_000, events: events)
            attempts += 1
        }
    }
}

extension OperationTag {
    init(kind: OperationKind, _ connection: ConnectionID) {
        self.init(kind: kind, slot: connection.slot, generation: connection.generation)
    }

    var connection: ConnectionID { ConnectionID(slot: slot, generation: generation) }
}

/// Whether this kernel, for this process, offers io_uring with every
/// operation the engine submits: probed on a throwaway ring, for audits
/// and diagnostics (an engine probes its own ring when it starts).
public enum IOUringProbe {
    public struct Outcome: Sendable, Equatable {
        public var supported: [String]
        public var missing: [String]
    }

    /// The operations found and missing, or why no ring could be set up
    /// (with the fix, as `EngineError.ioUringUnavailable` words it).
    public static func run() -> Result<Outcome, EngineError> {
        var ring = io_uring()
        let rc = io_uring_queue_init(4, &ring, 0)
        guard rc == 0 else { return .failure(.ioUringUnavailable(RingAvailability.explain(errno: -rc))) }
        defer { io_uring_queue_exit(&ring) }
        var outcome = Outcome(supported: [], missing: [])
        for (name, code) in IOURingBackend.requiredOperations {
            let answer = cu_probe_op(&ring, code)
            if answer < 0 {
                return .failure(.ioUringUnavailable("probing io_uring operations failed: \(String(cString: strerror(-answer)))"))
            }
            if answer == 1 { outcome.supported.append(name) } else { outcome.missing.append(name) }
        }
        return .success(outcome)
    }
}
