import Glibc

/// The seam between the server and the kernel.
///
/// The server asks for a handful of operations on sockets it owns (arm an
/// accept, arm a receive, send these iovecs, watch for a hang-up, cancel)
/// and hears back through `IOEvents` from inside `wait`. Everything above
/// the seam (framing, ordered replies, the broadcast ring, lag, deadlines,
/// back-pressure, shutdown) exists once; each backend is one file that
/// lists every system call it makes: `IOUringBackend` (submissions and
/// completions on one ring) and `EpollBackend` (readiness plus `recv`,
/// `sendmsg`, `accept4`), and `FakeBackend` for tests that play the kernel.
///
/// Rules every backend keeps, because the server relies on them:
/// - An armed receive or accept keeps delivering until it ends, and it
///   always ends with exactly one `receiveEnded`/`acceptEnded` (after a
///   cancel: `.cancelled`), delivered from `wait`, never from the call that
///   asked.
/// - A send completes exactly once (`sendCompleted`: bytes sent, which may be
///   fewer than asked, or `-errno`), from `wait`. The operation's memory is
///   the backend's to read until then.
/// - `cancelAll` ends every operation of a connection, each with its
///   completion; the server closes the socket only after the last one.
/// - Events for a connection carry its `ConnectionID` (slot and
///   generation): the server drops those for a connection that is gone.
/// - Bytes passed to `received` are valid only during the call.
protocol IOBackend: AnyObject {
    /// "io_uring (SINGLE_ISSUER|DEFER_TASKRUN)", "epoll", for logs and status.
    var description: String { get }
    var kind: IOBackendKind { get }

    func armAccept(listener: Int, fd: Int32)
    func cancelAccept(listener: Int)
    func armReceive(_ connection: ConnectionID, fd: Int32)
    func cancelReceive(_ connection: ConnectionID, fd: Int32)
    func send(_ operation: SendOperation, for connection: ConnectionID, fd: Int32)
    /// Completes when the peer hangs up (or with `-ECANCELED`).
    func armHangup(_ connection: ConnectionID, fd: Int32)
    func cancelHangup(_ connection: ConnectionID, fd: Int32)
    /// Ends every operation on `fd`.
    func cancelAll(_ connection: ConnectionID, fd: Int32)
    /// The socket is about to be closed: nothing of it is armed any more.
    func release(fd: Int32)

    /// Issues what was asked, waits at most `timeoutNanoseconds` for
    /// something to happen (not at all if something already has) and
    /// delivers it to `events`.
    func wait(timeoutNanoseconds: Int64, events: IOEvents)
    /// Cancels the accept and wake-up operations and waits until they have
    /// ended, so nothing the kernel holds outlives the backend.
    func shutDown(events: IOEvents)

    /// Receives re-armed per turn after they ran out of shared buffers.
    var rearmBatchAfterStarvation: Int { get }
    /// Completion-queue overflows seen (io_uring only).
    var overflowCount: Int { get }
}

/// A backend that also writes and syncs files for the loop, asynchronously
/// (io_uring): the journal is then written from the loop itself, its
/// writes batched per turn, with no thread in between. One write or one
/// sync is in flight at a time (a write with `thenSync` and its sync count
/// as one), and each completes exactly once, from `wait`
/// (`fileWriteCompleted`, `fileSyncCompleted`); the bytes are the
/// backend's to read until then.
protocol FileWritingBackend: IOBackend {
    /// With `thenSync`, an `fdatasync` follows in the kernel without a
    /// round trip through the loop (a linked operation): its completion
    /// comes after the write's, `-ECANCELED` when the write did not write
    /// everything.
    func writeFile(fd: Int32, bytes: UnsafeRawBufferPointer, offset: Int, thenSync: Bool)
    /// `fdatasync`.
    func syncFile(fd: Int32)
}

/// What a backend reports, on the loop thread, from inside `wait`.
protocol IOEvents: AnyObject {
    /// The blocking part of `wait` is over; events follow. The loop reads
    /// its clock here, so a deadline set while handling an event counts
    /// from when it arrived, not from before the wait.
    func waitReturned()
    func accepted(_ fd: Int32, listener: Int)
    /// One accept failed (`EMFILE`, `ECONNABORTED`, ...); accepting goes on
    /// unless the server cancels it.
    func acceptFailed(listener: Int, errno: Int32)
    /// The listener's accept is no longer armed (cancelled or ended by the
    /// kernel): re-arm it if still wanted.
    func acceptEnded(listener: Int)
    func received(_ connection: ConnectionID, _ bytes: UnsafeRawBufferPointer)
    func receiveEnded(_ connection: ConnectionID, _ end: ReceiveEnd)
    func sendCompleted(_ connection: ConnectionID, result: Int32)
    func hangupCompleted(_ connection: ConnectionID, result: Int32)
    /// Bytes written, possibly fewer than asked, or `-errno`
    /// (`FileWritingBackend` only).
    func fileWriteCompleted(result: Int32)
    /// 0 or `-errno` (`FileWritingBackend` only).
    func fileSyncCompleted(result: Int32)
}

/// Why a receive stopped delivering.
enum ReceiveEnd: Equatable {
    /// The peer shut down its side (`recv` returned 0).
    case endOfStream
    /// The kernel ended it with nothing wrong (a multishot receive without
    /// `IORING_CQE_F_MORE`): re-arm it if still wanted.
    case interrupted
    /// Every shared receive buffer was taken (`ENOBUFS`): re-arm it once
    /// buffers are back.
    case starved
    /// After `cancelReceive` or `cancelAll`.
    case cancelled
    case failed(Int32)
}

/// Which IO backend an engine runs on (`EngineConfiguration.ioBackend`).
public enum IOBackendKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// io_uring: one ring, multishot accept and receive, provided buffers.
    case ioUring = "io_uring"
    /// epoll: readiness, then `recv`, `sendmsg`, `accept4`.
    case epoll

    public var description: String { rawValue }
}

/// The backend an engine serves on, as `Engine.servingBackend` reports it.
public struct ServingBackend: Sendable, Equatable, CustomStringConvertible {
    public let kind: IOBackendKind
    /// With details: "io_uring (SINGLE_ISSUER|DEFER_TASKRUN)", "epoll".
    public let description: String
    /// The io_uring setup flags the kernel accepted; nil on epoll.
    public let ringFlags: String?
    /// Why io_uring was not used when `auto` chose epoll (and how to enable
    /// it); nil when io_uring serves or epoll was asked for.
    public let ioUringUnavailable: String?

    public init(kind: IOBackendKind, description: String, ringFlags: String?, ioUringUnavailable: String?) {
        self.kind = kind
        self.description = description
        self.ringFlags = ringFlags
        self.ioUringUnavailable = ioUringUnavailable
    }
}

/// Which backend to use (`--io-backend`).
public enum IOBackendChoice: String, Sendable, CaseIterable, CustomStringConvertible {
    /// io_uring when a ring with every operation the engine uses can be set
    /// up here, otherwise epoll (with one warning that says why).
    case auto
    case ioUring = "io_uring"
    case epoll

    public var description: String { rawValue }
}
