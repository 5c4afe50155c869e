import Glibc
import Testing
@_spi(Benchmarks) @testable import SecureOpsEngine

/// The kernel, played by the test: a third `IOBackend` for unit tests of
/// the server layer, with no io_uring and no epoll (SwiftNIO's
/// `EmbeddedChannel` is the model).
///
/// The fake records every request the server makes (`requests`) and keeps
/// what a kernel would hold because of them: an armed accept, receive or
/// hang-up watch, the send in flight with a copy of its bytes. The test
/// says what the kernel does next (`accept`, `receive`, `endReceive`,
/// `completeSend`, `failAccept`, `hangUp`, `completeCancellations`) and the
/// next `wait` delivers it, in the order queued, never sooner.
///
/// It checks the rules of the seam (`IOBackend`'s doc comment) as the
/// kernel enforces or assumes them, and records each breach by the server
/// in `violations`, also as an issue of the running test unless
/// `reportsViolations` is off. A test that asks the fake for something no
/// kernel would do (complete a send that is not in flight) gets an issue
/// too: that is a bug in the test.
final class FakeBackend: FileWritingBackend {
    /// What the server asked for, in order.
    enum Request: Equatable, CustomStringConvertible {
        case armAccept(listener: Int)
        case cancelAccept(listener: Int)
        case armReceive(ConnectionID)
        case cancelReceive(ConnectionID)
        /// The bytes asked for, as text.
        case send(ConnectionID, String)
        case armHangup(ConnectionID)
        case cancelHangup(ConnectionID)
        case cancelAll(ConnectionID)
        case release(fd: Int32)
        case writeFile(offset: Int, count: Int)
        case syncFile

        var description: String {
            switch self {
            case .armAccept(let listener): "armAccept(\(listener))"
            case .cancelAccept(let listener): "cancelAccept(\(listener))"
            case .armReceive(let id): "armReceive(\(id))"
            case .cancelReceive(let id): "cancelReceive(\(id))"
            case .send(let id, let text): "send(\(id), \(text.debugDescription))"
            case .armHangup(let id): "armHangup(\(id))"
            case .cancelHangup(let id): "cancelHangup(\(id))"
            case .cancelAll(let id): "cancelAll(\(id))"
            case .release(let fd): "release(fd: \(fd))"
            case .writeFile(let offset, let count): "writeFile(offset: \(offset), count: \(count))"
            case .syncFile: "syncFile"
            }
        }
    }

    /// An operation the fake holds: armed, or asked to stop with its
    /// completion still to come.
    enum Phase: Equatable { case armed, cancelling }

    /// What the kernel does next.
    enum Event {
        case accepted(fd: Int32, listener: Int)
        /// `ends`: the failure also ends the accept (io_uring's multishot
        /// accept does, epoll's readiness does not).
        case acceptFailed(listener: Int, errno: Int32, ends: Bool)
        case acceptEnded(listener: Int)
        case received(ConnectionID, [UInt8])
        case receiveEnded(ConnectionID, ReceiveEnd)
        case sendCompleted(ConnectionID, SendResult)
        case hangupCompleted(ConnectionID, result: Int32)
        case fileWriteCompleted(SendResult)
        /// 0 or `-errno`.
        case fileSyncCompleted(result: Int32)
    }

    enum SendResult {
        /// Everything still asked for.
        case all
        /// The first `n` bytes asked for (a partial send when fewer).
        case bytes(Int)
        /// `-errno`.
        case failed(Int32)
    }

    private(set) var requests: [Request] = []
    private var requestsTaken = 0
    private(set) var violations: [String] = []
    var reportsViolations = true

    // IOBackend's knobs, settable by tests.
    var rearmBatchAfterStarvation = 2
    var overflowCount = 0

    // MARK: What the kernel holds

    private struct InFlightSend {
        let operation: SendOperation
        /// Copied when the send was asked for: the kernel may read the
        /// operation's memory until the completion, so it must not change.
        let bytes: [UInt8]
        var phase = Phase.armed
    }

    private struct Held {
        let fd: Int32
        var receive: Phase?
        var hangup: Phase?
        var send: InFlightSend?
        var isEmpty: Bool { receive == nil && hangup == nil && send == nil }

        var summary: String {
            var parts: [String] = []
            if let receive { parts.append("receive \(receive)") }
            if let send { parts.append("send \(send.phase)") }
            if let hangup { parts.append("hang-up watch \(hangup)") }
            return parts.joined(separator: ", ")
        }
    }

    /// The file write in flight: where, and a copy of its bytes.
    private struct InFlightFileWrite {
        let fd: Int32
        let memory: UnsafeRawBufferPointer
        let bytes: [UInt8]
        let offset: Int
        /// A sync follows in the kernel, cancelled when the write falls short.
        let syncLinked: Bool
    }

    private var fileWrite: InFlightFileWrite?
    private var fileSync: Int32?

    private var held: [ConnectionID: Held] = [:]
    private var accepts: [Int: Phase] = [:]
    /// Connections whose socket was released: nothing may be asked for them.
    private var released: Set<ConnectionID> = []
    /// The connection that last asked for something on each descriptor.
    private var owners: [Int32: ConnectionID] = [:]
    /// What went out on each connection's socket, in order.
    private var transmitted: [ConnectionID: [UInt8]] = [:]
    /// Events for the next `wait`; `checked: false` for injected ones.
    private var pending: [(event: Event, checked: Bool)] = []
    /// The inbox's eventfd: a wait with nothing queued blocks on it, so
    /// offloaded replies and publishes from other threads wake the loop.
    private let wakeFD: Int32

    init(wakeFD: Int32 = -1) {
        self.wakeFD = wakeFD
    }

    var description: String { "fake" }
    /// Nothing above the seam reads it; the fake behaves like io_uring
    /// (multishot operations that end, receives that starve).
    var kind: IOBackendKind { .ioUring }

    // MARK: - What the test reads

    /// The requests made since the last call.
    func takeRequests() -> [Request] {
        defer { requestsTaken = requests.count }
        return Array(requests[requestsTaken...])
    }

    /// Everything that went out on the connection's socket, as text.
    func sent(to id: ConnectionID) -> String {
        String(decoding: transmitted[id, default: []], as: UTF8.self)
    }

    /// The bytes of the send in flight, as text; nil when there is none.
    func sendInFlight(_ id: ConnectionID) -> String? {
        held[id]?.send.map { String(decoding: $0.bytes, as: UTF8.self) }
    }

    func receive(of id: ConnectionID) -> Phase? { held[id]?.receive }
    func send(of id: ConnectionID) -> Phase? { held[id]?.send?.phase }
    func hangup(of id: ConnectionID) -> Phase? { held[id]?.hangup }
    func accept(of listener: Int) -> Phase? { accepts[listener] }

    // MARK: - What the test makes the kernel do (delivered by the next wait)

    func accept(_ fd: Int32, listener: Int = 0) {
        queue(.accepted(fd: fd, listener: listener))
    }

    func failAccept(listener: Int = 0, errno code: Int32, times: Int = 1, endingTheAccept ends: Bool = false) {
        for _ in 0..<times { queue(.acceptFailed(listener: listener, errno: code, ends: ends)) }
    }

    func endAccept(listener: Int = 0) {
        queue(.acceptEnded(listener: listener))
    }

    func receive(_ id: ConnectionID, _ text: String) {
        queue(.received(id, Array(text.utf8)))
    }

    func endReceive(_ id: ConnectionID, _ end: ReceiveEnd) {
        queue(.receiveEnded(id, end))
    }

    /// Completes the send in flight with everything it asked for, or with
    /// `bytes` of it.
    func completeSend(_ id: ConnectionID, bytes: Int? = nil) {
        queue(.sendCompleted(id, bytes.map { .bytes($0) } ?? .all))
    }

    func failSend(_ id: ConnectionID, errno code: Int32) {
        queue(.sendCompleted(id, .failed(code)))
    }

    func hangUp(_ id: ConnectionID) {
        queue(.hangupCompleted(id, result: Int32(POLLHUP)))
    }

    /// The completion of every operation the server asked to cancel:
    /// `.cancelled`, `-ECANCELED`, or the end of the accept.
    func completeCancellations() {
        for id in held.keys.sorted(by: { ($0.slot, $0.generation) < ($1.slot, $1.generation) }) {
            let operations = held[id]!
            if operations.receive == .cancelling { queue(.receiveEnded(id, .cancelled)) }
            if operations.send?.phase == .cancelling { queue(.sendCompleted(id, .failed(ECANCELED))) }
            if operations.hangup == .cancelling { queue(.hangupCompleted(id, result: -ECANCELED)) }
        }
        for listener in accepts.keys.sorted() where accepts[listener] == .cancelling {
            queue(.acceptEnded(listener: listener))
        }
    }

    /// Completes the file write in flight: the first `bytes` of it (all
    /// when nil) really reach the file, as a kernel's short write would.
    func completeFileWrite(bytes: Int? = nil) {
        queue(.fileWriteCompleted(bytes.map { .bytes($0) } ?? .all))
    }

    func failFileWrite(errno code: Int32) {
        queue(.fileWriteCompleted(.failed(code)))
    }

    /// Completes the sync in flight (a real `fdatasync` when it succeeds).
    func completeFileSync(errno code: Int32 = 0) {
        queue(.fileSyncCompleted(result: -code))
    }

    var fileWriteInFlight: (offset: Int, count: Int)? { fileWrite.map { ($0.offset, $0.bytes.count) } }
    var fileSyncInFlight: Bool { fileSync != nil }

    /// Delivers `event` as it is, with no check and no bookkeeping: for
    /// what a correct kernel would never send (a completion carrying a
    /// connection that is gone).
    func inject(_ event: Event) {
        pending.append((event, false))
    }

    private func queue(_ event: Event) {
        pending.append((event, true))
    }

    // MARK: - IOBackend: requests

    func armAccept(listener: Int, fd: Int32) {
        requests.append(.armAccept(listener: listener))
        if accepts[listener] != nil { violation("accept armed twice on listener \(listener)") }
        accepts[listener] = .armed
    }

    func cancelAccept(listener: Int) {
        requests.append(.cancelAccept(listener: listener))
        // Cancelling what has already ended is harmless (-ENOENT).
        if accepts[listener] == .armed { accepts[listener] = .cancelling }
    }

    func armReceive(_ id: ConnectionID, fd: Int32) {
        requests.append(.armReceive(id))
        guard use(id, fd, "armReceive") else { return }
        if held[id, default: Held(fd: fd)].receive != nil { violation("receive armed twice on connection \(id)") }
        held[id, default: Held(fd: fd)].receive = .armed
    }

    func cancelReceive(_ id: ConnectionID, fd: Int32) {
        requests.append(.cancelReceive(id))
        guard use(id, fd, "cancelReceive") else { return }
        if held[id]?.receive == .armed { held[id]!.receive = .cancelling }
    }

    func send(_ operation: SendOperation, for id: ConnectionID, fd: Int32) {
        let bytes = Self.pendingBytes(of: operation)
        requests.append(.send(id, String(decoding: bytes, as: UTF8.self)))
        guard use(id, fd, "send") else { return }
        guard !bytes.isEmpty else {
            violation("a send of zero bytes on connection \(id)")
            return
        }
        guard held[id]?.send == nil else {
            violation("a second send on connection \(id) while one is in flight (bytes could be reordered)")
            return
        }
        held[id, default: Held(fd: fd)].send = InFlightSend(operation: operation, bytes: bytes)
    }

    func armHangup(_ id: ConnectionID, fd: Int32) {
        requests.append(.armHangup(id))
        guard use(id, fd, "armHangup") else { return }
        if held[id, default: Held(fd: fd)].hangup != nil { violation("hang-up watch armed twice on connection \(id)") }
        held[id, default: Held(fd: fd)].hangup = .armed
    }

    func cancelHangup(_ id: ConnectionID, fd: Int32) {
        requests.append(.cancelHangup(id))
        guard use(id, fd, "cancelHangup") else { return }
        if held[id]?.hangup == .armed { held[id]!.hangup = .cancelling }
    }

    func cancelAll(_ id: ConnectionID, fd: Int32) {
        requests.append(.cancelAll(id))
        guard use(id, fd, "cancelAll"), var operations = held[id] else { return }
        if operations.receive != nil { operations.receive = .cancelling }
        if operations.hangup != nil { operations.hangup = .cancelling }
        operations.send?.phase = .cancelling
        held[id] = operations
    }

    func release(fd: Int32) {
        requests.append(.release(fd: fd))
        for (id, operations) in held where operations.fd == fd && !operations.isEmpty {
            violation("fd \(fd) released while connection \(id) still has operations on it: \(operations.summary)")
        }
        if let owner = owners.removeValue(forKey: fd) { released.insert(owner) }
        held = held.filter { $0.value.fd != fd || !$0.value.isEmpty }
    }

    func writeFile(fd: Int32, bytes: UnsafeRawBufferPointer, offset: Int, thenSync: Bool) {
        requests.append(.writeFile(offset: offset, count: bytes.count))
        if thenSync { requests.append(.syncFile) }
        guard fileWrite == nil && fileSync == nil else {
            return violation("a file write while another file operation is in flight")
        }
        fileWrite = InFlightFileWrite(fd: fd, memory: bytes, bytes: Array(bytes), offset: offset, syncLinked: thenSync)
    }

    func syncFile(fd: Int32) {
        requests.append(.syncFile)
        guard fileWrite == nil && fileSync == nil else {
            return violation("a file sync while another file operation is in flight")
        }
        fileSync = fd
    }

    /// Checks that `id` may ask for something on `fd`; false when it may
    /// not (the request is then ignored).
    private func use(_ id: ConnectionID, _ fd: Int32, _ what: String) -> Bool {
        if released.contains(id) {
            violation("\(what) for connection \(id) after its socket was released")
            return false
        }
        if let operations = held[id], operations.fd != fd {
            violation("\(what) for connection \(id) on fd \(fd), but its operations are on fd \(operations.fd)")
            return false
        }
        if let owner = owners[fd], owner != id, let theirs = held[owner], !theirs.isEmpty {
            violation("\(what) for connection \(id) on fd \(fd), which connection \(owner) still has operations on")
            return false
        }
        owners[fd] = id
        return true
    }

    private func violation(_ message: String) {
        violations.append(message)
        if reportsViolations { Issue.record(Comment(rawValue: "the server broke a rule of the IO seam: \(message)")) }
    }

    private func misuse(_ message: String) {
        Issue.record(Comment(rawValue: "the test asked the fake kernel for something no kernel would do: \(message)"))
    }

    /// The bytes a `sendmsg` of the operation would read now, read the way
    /// the real backends read them (`prepareHeader`, then the iovecs).
    private static func pendingBytes(of operation: SendOperation) -> [UInt8] {
        operation.prepareHeader()
        let header = operation.header.pointee
        var bytes: [UInt8] = []
        for index in 0..<Int(header.msg_iovlen) {
            let vector = header.msg_iov[index]
            bytes += UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len)
        }
        return bytes
    }

    // MARK: - IOBackend: waiting

    func wait(timeoutNanoseconds: Int64, events: IOEvents) {
        if pending.isEmpty && timeoutNanoseconds > 0 { block(timeoutNanoseconds) }
        events.waitReturned()
        drainWake()
        let batch = pending
        pending.removeAll()
        for (event, checked) in batch {
            if checked { deliver(event, to: events) } else { deliverAsIs(event, to: events) }
        }
    }

    func shutDown(events: IOEvents) {
        for listener in accepts.keys.sorted() {
            accepts[listener] = nil
            events.acceptEnded(listener: listener)
        }
    }

    private func deliver(_ event: Event, to events: IOEvents) {
        switch event {
        case .accepted(let fd, let listener):
            guard accepts[listener] != nil else { return misuse("an accept on listener \(listener), which has none armed") }
            events.accepted(fd, listener: listener)
        case .acceptFailed(let listener, let code, let ends):
            guard accepts[listener] != nil else { return misuse("a failed accept on listener \(listener), which has none armed") }
            events.acceptFailed(listener: listener, errno: code)
            if ends {
                accepts[listener] = nil
                events.acceptEnded(listener: listener)
            }
        case .acceptEnded(let listener):
            guard accepts[listener] != nil else { return misuse("the end of an accept on listener \(listener), which has none armed") }
            accepts[listener] = nil
            events.acceptEnded(listener: listener)
        case .received(let id, let bytes):
            guard held[id]?.receive != nil else { return misuse("bytes for connection \(id), which has no receive armed") }
            deliverReceived(id, bytes, to: events)
        case .receiveEnded(let id, let end):
            guard held[id]?.receive != nil else { return misuse("the end of a receive on connection \(id), which has none armed") }
            held[id]!.receive = nil
            events.receiveEnded(id, end)
        case .sendCompleted(let id, let outcome):
            guard let send = held[id]?.send else { return misuse("a send completion for connection \(id), which has no send in flight") }
            let result: Int32
            switch outcome {
            case .all: result = Int32(send.bytes.count)
            case .bytes(let count):
                guard count >= 0 && count <= send.bytes.count else {
                    return misuse("\(count) bytes sent on connection \(id), of \(send.bytes.count) asked")
                }
                result = Int32(count)
            case .failed(let code): result = -code
            }
            if Self.pendingBytes(of: send.operation) != send.bytes {
                violation("the memory of connection \(id)'s send changed while it was in flight")
            }
            if result > 0 { transmitted[id, default: []] += send.bytes.prefix(Int(result)) }
            held[id]!.send = nil
            events.sendCompleted(id, result: result)
        case .hangupCompleted(let id, let result):
            guard held[id]?.hangup != nil else { return misuse("a hang-up for connection \(id), which has no watch armed") }
            held[id]!.hangup = nil
            events.hangupCompleted(id, result: result)
        case .fileWriteCompleted(let outcome):
            guard let write = fileWrite else { return misuse("a file write completion with none in flight") }
            if Array(write.memory) != write.bytes { violation("the memory of the file write changed while it was in flight") }
            let result: Int32
            switch outcome {
            case .all: result = Int32(write.bytes.count)
            case .bytes(let count):
                guard count >= 0 && count <= write.bytes.count else { return misuse("\(count) bytes written of \(write.bytes.count)") }
                result = Int32(count)
            case .failed(let code): result = -code
            }
            if result > 0 {
                let written = write.bytes.withUnsafeBytes { pwrite(write.fd, $0.baseAddress, Int(result), off_t(write.offset)) }
                if written != Int(result) { misuse("the fake's own pwrite failed (errno \(errno))") }
            }
            fileWrite = nil
            if write.syncLinked {
                // A short write fails the link, as io_uring's does.
                if result == Int32(write.bytes.count) {
                    fileSync = write.fd
                } else {
                    fileSync = write.fd
                    queue(.fileSyncCompleted(result: -ECANCELED))
                }
            }
            events.fileWriteCompleted(result: result)
        case .fileSyncCompleted(let result):
            guard let fd = fileSync else { return misuse("a file sync completion with none in flight") }
            if result == 0 { fdatasync(fd) }
            fileSync = nil
            events.fileSyncCompleted(result: result)
        }
    }

    private func deliverAsIs(_ event: Event, to events: IOEvents) {
        switch event {
        case .accepted(let fd, let listener): events.accepted(fd, listener: listener)
        case .acceptFailed(let listener, let code, _): events.acceptFailed(listener: listener, errno: code)
        case .acceptEnded(let listener): events.acceptEnded(listener: listener)
        case .received(let id, let bytes): deliverReceived(id, bytes, to: events)
        case .receiveEnded(let id, let end): events.receiveEnded(id, end)
        case .sendCompleted(let id, let outcome):
            switch outcome {
            case .all: misuse("an injected send completion needs a byte count")
            case .bytes(let count): events.sendCompleted(id, result: Int32(count))
            case .failed(let code): events.sendCompleted(id, result: -code)
            }
        case .hangupCompleted(let id, let result): events.hangupCompleted(id, result: result)
        case .fileWriteCompleted, .fileSyncCompleted: misuse("file completions are not injected")
        }
    }

    /// Bytes are valid only during the call: the buffer is scribbled over
    /// and freed right after, as a provided buffer goes back to the kernel.
    private func deliverReceived(_ id: ConnectionID, _ bytes: [UInt8], to events: IOEvents) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        events.received(id, UnsafeRawBufferPointer(rebasing: buffer[0..<bytes.count]))
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
    }

    private func block(_ nanoseconds: Int64) {
        var poller = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
        _ = wakeFD >= 0 ? poll(&poller, 1, milliseconds) : poll(nil, 0, milliseconds)
    }

    private func drainWake() {
        guard wakeFD >= 0 else { return }
        var value: UInt64 = 0
        while read(wakeFD, &value, 8) == 8 {}
    }
}

extension FakeBackend.Phase: CustomStringConvertible {
    var description: String { self == .armed ? "armed" : "cancelling" }
}

