import CURing
import Glibc
import Logging

/// One io_uring instance, owned by exactly one thread for its whole life.
///
/// The ring is created on the loop thread and only ever touched there: with
/// `IORING_SETUP_SINGLE_ISSUER` another submitter gets `EINVAL`, and requests
/// die with `-ECANCELED` when the thread that submitted them exits. With
/// `IORING_SETUP_DEFER_TASKRUN` completions are posted only when this thread
/// enters the kernel to wait, so the loop must call `submitAndWait`, never
/// just peek.
package final class IOURing {
    let ring: UnsafeMutablePointer<io_uring>
    let setup: RingSetup
    /// SQEs prepared since the last submit.
    @exclusivity(unchecked) private(set) var unsubmitted = 0
    @exclusivity(unchecked) private var completionBatch: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    private let completionBatchSize = 256
    /// Completions moved out of the CQ ring to make room when the
    /// submission queue could not be emptied; handled first next time.
    @exclusivity(unchecked) private var deferred: [(userData: UInt64, result: Int32, flags: UInt32)] = []
    /// Turns that found completions on the kernel's overflow list.
    @exclusivity(unchecked) private(set) var overflowTurns = 0

    /// Creates a ring with `entries` submission slots and `completionEntries`
    /// completion slots, asking for the best flags the kernel offers and
    /// falling back one step at a time.
    package init(entries: UInt32, completionEntries: UInt32, logger: Logger = Logger(label: "secureops.ring")) throws(EngineError) {
        ring = .allocate(capacity: 1)
        ring.initialize(to: io_uring())
        completionBatch = .allocate(capacity: completionBatchSize)
        var chosen: RingSetup?
        var lastError: Int32 = 0
        for attempt in RingSetup.attempts(completionEntries: completionEntries) {
            var params = io_uring_params()
            params.flags = attempt.flags
            params.cq_entries = completionEntries
            // The kernel wants at least as many CQ as SQ entries; a tiny CQ
            // (tests of overflow handling) shrinks the SQ with it.
            let rc = io_uring_queue_init_params(min(entries, completionEntries), ring, &params)
            if rc == 0 {
                chosen = RingSetup(
                    name: attempt.name, flags: attempt.flags, features: params.features,
                    submissionEntries: params.sq_entries, completionEntries: params.cq_entries)
                break
            }
            lastError = -rc
            if lastError != EINVAL { break }
            logger.info("io_uring setup without \(attempt.name) flags: kernel answered EINVAL, trying fewer")
        }
        guard let chosen else {
            completionBatch.deallocate()
            ring.deallocate()
            throw EngineError.ioUringUnavailable(RingAvailability.explain(errno: lastError))
        }
        setup = chosen
        guard setup.features & CU_FEAT_NODROP != 0, setup.features & CU_FEAT_EXT_ARG != 0 else {
            io_uring_queue_exit(ring)
            completionBatch.deallocate()
            ring.deallocate()
            throw EngineError.ioUringUnavailable(
                "this kernel's io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG (Linux 5.11 or later is needed; 6.1 or later recommended)")
        }
    }

    deinit {
        io_uring_queue_exit(ring)
        completionBatch.deallocate()
        ring.deallocate()
    }

    /// A free submission slot. When the submission queue is full, what is
    /// queued is submitted first, so a burst larger than the ring still goes out.
    package func nextSubmission() -> UnsafeMutablePointer<io_uring_sqe> {
        if let sqe = io_uring_get_sqe(ring) {
            unsubmitted += 1
            return sqe
        }
        var attempts = 0
        while true {
            _ = submit()
            if let sqe = io_uring_get_sqe(ring) {
                unsubmitted += 1
                return sqe
            }
            // Older kernels refuse submissions (-EBUSY) while completions
            // wait on the overflow list. Move ready completions aside (they
            // are handled, in order, at the next drain) and flush the
            // overflow into the ring, then try again. Handling them here
            // would re-enter the caller's half-done state change.
            deferReadyCompletions()
            _ = io_uring_get_events(ring)
            deferReadyCompletions()
            attempts += 1
            precondition(attempts < 10_000, "io_uring submission queue stays full")
        }
    }

    /// Makes room for `count` SQEs in a row: what is queued is submitted
    /// first when fewer slots are free. A linked chain must be submitted
    /// whole: one cut by a submission in the middle runs unlinked.
    package func reserveSubmissions(_ count: Int) {
        var attempts = 0
        while Int(cu_sq_space_left(ring)) < count {
            _ = submit()
            guard Int(cu_sq_space_left(ring)) < count else { return }
            // As in `nextSubmission`: a kernel refusing while completions
            // overflow takes them aside first.
            deferReadyCompletions()
            _ = io_uring_get_events(ring)
            deferReadyCompletions()
            attempts += 1
            precondition(attempts < 10_000, "io_uring submission queue stays full")
        }
    }

    /// Submits queued SQEs without waiting. Returns the kernel's answer.
    @discardableResult
    package func submit() -> Int32 {
        unsubmitted = 0
        return io_uring_submit(ring)
    }

    /// Submits everything queued and waits until at least one completion is
    /// ready or `timeoutNanoseconds` pass. With DEFER_TASKRUN this is where
    /// completions are produced.
    package func submitAndWait(timeoutNanoseconds: Int64) -> Int32 {
        unsubmitted = 0
        var timeout = __kernel_timespec(
            tv_sec: timeoutNanoseconds / 1_000_000_000, tv_nsec: timeoutNanoseconds % 1_000_000_000)
        var cqe: UnsafeMutablePointer<io_uring_cqe>?
        let waitFor: UInt32 = (cu_cq_ready(ring) > 0 || !deferred.isEmpty) ? 0 : 1
        let rc = io_uring_submit_and_wait_timeout(ring, &cqe, waitFor, &timeout, nil)
        return rc
    }

    /// Hands every ready completion to `body` and marks them seen.
    /// Returns how many there were.
    @inline(__always)
    package func drainCompletions(_ body: (_ userData: UInt64, _ result: Int32, _ flags: UInt32) -> Void) -> Int {
        var total = 0
        if cu_cq_overflow_pending(ring) != 0 { overflowTurns += 1 }
        if !deferred.isEmpty {
            let moved = deferred
            deferred.removeAll()
            for completion in moved { body(completion.userData, completion.result, completion.flags) }
            total += moved.count
        }
        while true {
            let count = Int(cu_peek_batch(ring, completionBatch, UInt32(completionBatchSize)))
            if count == 0 { break }
            for index in 0..<count {
                let cqe = completionBatch[index].unsafelyUnwrapped
                body(cqe.pointee.user_data, cqe.pointee.res, cqe.pointee.flags)
            }
            io_uring_cq_advance(ring, UInt32(count))
            total += count
        }
        return total
    }

    /// Completions the kernel dropped (should stay 0 with IORING_FEAT_NODROP)
    /// plus turns that found completions on its overflow list.
    var overflowCount: Int { Int(cu_cq_overflow(ring)) + overflowTurns }

    private func deferReadyCompletions() {
        while true {
            let count = Int(cu_peek_batch(ring, completionBatch, UInt32(completionBatchSize)))
            if count == 0 { return }
            for index in 0..<count {
                let cqe = completionBatch[index].unsafelyUnwrapped.pointee
                deferred.append((cqe.user_data, cqe.res, cqe.flags))
            }
            io_uring_cq_advance(ring, UInt32(count))
        }
    }

    func supports(opcode: Int32) -> Bool {
        cu_probe_op(ring, opcode) == 1
    }
}

/// The flags a ring was created with, for logs and the audit.
struct RingSetup: Sendable {
    var name: String
    var flags: UInt32
    var features: UInt32
    var submissionEntries: UInt32
    var completionEntries: UInt32

    var singleIssuer: Bool { flags & CU_SETUP_SINGLE_ISSUER != 0 }
    var deferTaskrun: Bool { flags & CU_SETUP_DEFER_TASKRUN != 0 }

    struct Attempt {
        var name: String
        var flags: UInt32
    }

    /// Best first. CQSIZE lets the completion queue be sized well above the
    /// submission queue (a burst of sends to every subscriber completes at
    /// once); CLAMP caps it at the kernel's maximum instead of failing;
    /// SUBMIT_ALL keeps submitting after one bad SQE; COOP_TASKRUN avoids IPIs;
    /// SINGLE_ISSUER + DEFER_TASKRUN run completion work on this thread only,
    /// when it waits, which batches it.
    static func attempts(completionEntries: UInt32) -> [Attempt] {
        let base = CU_SETUP_CQSIZE | CU_SETUP_CLAMP
        return [
            Attempt(name: "SINGLE_ISSUER|DEFER_TASKRUN",
                    flags: base | CU_SETUP_SUBMIT_ALL | CU_SETUP_COOP_TASKRUN | CU_SETUP_SINGLE_ISSUER | CU_SETUP_DEFER_TASKRUN),
            Attempt(name: "COOP_TASKRUN|SUBMIT_ALL", flags: base | CU_SETUP_SUBMIT_ALL | CU_SETUP_COOP_TASKRUN),
            Attempt(name: "CQSIZE", flags: base),
        ]
    }
}

/// Why io_uring cannot be used here, in words that name the fix.
enum RingAvailability {
    static func explain(errno code: Int32) -> String {
        switch code {
        case ENOSYS:
            return "io_uring_setup failed with ENOSYS: this kernel was built without io_uring (CONFIG_IO_URING) or is older than 5.1; io_uring needs Linux 6.1 or later"
        case EPERM:
            let sysctl = readSysctl("/proc/sys/kernel/io_uring_disabled")
            switch sysctl {
            case "2":
                return "io_uring_setup failed with EPERM: io_uring is disabled by sysctl kernel.io_uring_disabled=2; enable it with 'sysctl -w kernel.io_uring_disabled=0'"
            case "1":
                return "io_uring_setup failed with EPERM: kernel.io_uring_disabled=1 limits io_uring to the group in kernel.io_uring_group; add this user to that group or run 'sysctl -w kernel.io_uring_disabled=0'"
            default:
                return "io_uring_setup failed with EPERM although kernel.io_uring_disabled=\(sysctl ?? "unknown"): a seccomp profile (a container runtime's default, for example) is blocking io_uring; allow the io_uring_setup, io_uring_enter and io_uring_register system calls (docker: --security-opt seccomp=unconfined, or a custom profile)"
            }
        case ENOMEM:
            return "io_uring_setup failed with ENOMEM: not enough locked memory for the rings; raise this process's RLIMIT_MEMLOCK or lower the ring sizes (submissionQueueEntries, completionQueueEntries)"
        case EINVAL:
            return "io_uring_setup failed with EINVAL for every flag combination tried: this kernel's io_uring is too old (Linux 6.1 or later is needed)"
        default:
            return "io_uring_setup failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }

    static func readSysctl(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self).trimmingWhitespace()
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
