import SecureOpsSystem
import CSecureOpsSystem
import Glibc
import Synchronization

/// The only door into the loop thread from other threads.
///
/// Offloaded handlers post their encoded replies here, embedders publish
/// frames here from any thread, and `shutdown` arrives here. Posting is a
/// short critical section plus, at most once per loop turn, an 8-byte write
/// to an eventfd that the ring has a read armed on: many posts coalesce into
/// one wake-up. Publishing assigns the sequence inside the lock, so frames
/// enter the broadcast ring in sequence order and one thread's publishes keep
/// their order.
final class Inbox: Sendable {
    struct State {
        var messages: [InboxMessage] = []
        var nextSequence: UInt64 = 1
        /// Frames published but not yet taken by the loop, end to end.
        var frameBytes: [UInt8] = []
        var frameLengths: [Int] = []
        var writer = JSONWriter(capacity: 1024)
        var wakePending = false
        var closed = false
    }

    private let state = Locked(State())
    let eventFD: Int32
    private let loopThread = Atomic<UInt>(0)

    /// `nextSequence`: the sequence the first published frame gets (a
    /// journal's stream continues where it stopped).
    init(nextSequence: UInt64 = 1) throws(EngineError) {
        state.withLock { $0.nextSequence = nextSequence }
        let fd = cs_eventfd()
        guard fd >= 0 else { throw .socketSetup(operation: "eventfd()", path: "(wake-up)", errno: -fd) }
        eventFD = fd
    }

    deinit {
        Glibc.close(eventFD)
    }

    func bindToCurrentThread() {
        loopThread.store(UInt(pthread_self()), ordering: .releasing)
    }

    private var onLoopThread: Bool {
        loopThread.load(ordering: .acquiring) == UInt(pthread_self())
    }

    /// Queues a message for the loop. Returns false when the loop has
    /// already stopped taking messages.
    @discardableResult
    func post(_ message: InboxMessage) -> Bool {
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.closed else { return (false, false) }
            state.messages.append(message)
            return (true, state.requestWake())
        }
        if wake { signal() }
        return accepted
    }

    /// Assigns the next sequence, lets `encode` write the frame (with its
    /// sequence and the time in milliseconds since the epoch) and queues it
    /// for the broadcast ring. Returns nil, without calling `encode`, once
    /// the loop has stopped: the frame would go nowhere.
    func publish(_ encode: (_ sequence: UInt64, _ timestampMilliseconds: Int64, inout JSONWriter) -> Void) -> UInt64? {
        let now = SystemClock.realtimeMilliseconds()
        let onLoop = onLoopThread
        let (sequence, wake) = state.withLock { state -> (UInt64?, Bool) in
            guard !state.closed else { return (nil, false) }
            let sequence = state.nextSequence
            state.nextSequence += 1
            state.writer.reset()
            encode(sequence, now, &state.writer)
            state.frameBytes.append(contentsOf: state.writer.bytes)
            state.frameLengths.append(state.writer.bytes.count)
            return (sequence, onLoop ? false : state.requestWake())
        }
        if wake { signal() }
        return sequence
    }

    /// The sequence the next publish will get.
    var nextSequence: UInt64 {
        state.withLock { $0.nextSequence }
    }

    /// Swaps out everything posted since the last call. The caller passes
    /// empty arrays (with capacity) to avoid allocating on every turn.
    func take(messages: inout [InboxMessage], frameBytes: inout [UInt8], frameLengths: inout [Int]) {
        state.withLock { state in
            state.wakePending = false
            swap(&state.messages, &messages)
            swap(&state.frameBytes, &frameBytes)
            swap(&state.frameLengths, &frameLengths)
        }
    }

    /// Swaps out published frames only (the loop needs them mid-turn, for
    /// example to answer `alerts` right after a `publish`).
    func takeFrames(frameBytes: inout [UInt8], frameLengths: inout [Int]) {
        state.withLock { state in
            guard !state.frameLengths.isEmpty else { return }
            swap(&state.frameBytes, &frameBytes)
            swap(&state.frameLengths, &frameLengths)
        }
    }

    /// Refuses further posts (the loop is gone); returns what was left.
    func close() -> [InboxMessage] {
        state.withLock { state in
            state.closed = true
            defer { state.messages = [] }
            return state.messages
        }
    }

    private func signal() {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
    }
}

extension Inbox.State {
    /// True when the caller must write the eventfd (nobody has yet this turn).
    mutating func requestWake() -> Bool {
        if wakePending { return false }
        wakePending = true
        return true
    }
}

enum InboxMessage: Sendable {
    /// An offloaded handler finished; its encoded reply for request `requestID`.
    case offloadFinished(ConnectionID, requestID: UInt64, reply: OffloadOutcome)
    case updateLimits(EngineLimits)
    case reviewConnections
    /// The journal writer dealt with records up to `progress.through`.
    case journalProgress(JournalProgress)
    /// A maintenance job of the loop's io_uring journal writer finished.
    case journalMaintained(JournalMaintenance)
    /// Frames read from the journal for a subscriber behind the ring.
    case journalRead(ConnectionID, from: UInt64, JournalReadOutcome)
    case shutdown
}

/// Identifies one connection for as long as it lives: a slot in the
/// connection table and that slot's generation.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public let slot: UInt32
    public let generation: UInt32
    public var description: String { "\(slot).\(generation)" }
}
