import Glibc
import SecureOpsSystem

/// The request side of one connection: frames go out in call order, replies
/// come back in the same order (WIRE.md: no ids needed) and each is decoded
/// straight into the type its call returns.
///
/// Replies are read on the poll thread (`SocketPoller.whenReady`), not by a
/// task: a call's timeout then measures the daemon, never how long a busy
/// cooperative pool took to schedule a reader.
///
/// When the connection ends, every call still waiting fails (with
/// `IpcError.connectionLost` when the daemon went away) and `onEnd` tells
/// the owner, which reconnects or gives up. Nothing is re-sent.
final class RequestPipeline: Sendable {
    /// Why a pipeline ended, for its owner.
    struct Ending: Sendable {
        let error: IpcError
        /// The daemon closed the connection with an error before answering
        /// any call: it accepted the connection only to refuse it (at its
        /// connection limit, say).
        let refusedBeforeServing: Bool
    }

    private struct State {
        /// Calls in the order their requests went out; `head` is the one
        /// the next reply belongs to.
        var waiting: [any PendingReply] = []
        var head = 0
        /// Bytes the socket could not take yet; written by `flush`.
        var outgoing: [UInt8] = []
        var flushing = false
        var ended: IpcError?
        var answeredACall = false
        /// An `err` frame that answered no call: the daemon's reason for
        /// closing the connection (it refused this peer, say).
        var unsolicitedError: String?
        /// The armed read callback, cancelled at the end.
        var reading: SocketPoller.Registration?
    }

    let socket: ClientSocket
    private let state = Locked(State())
    private let reader: ReplyReader
    private let onEnd: @Sendable (RequestPipeline, Ending) -> Void

    init(socket: ClientSocket, maxFrameBytes: Int, onEnd: @escaping @Sendable (RequestPipeline, Ending) -> Void) {
        self.socket = socket
        self.onEnd = onEnd
        reader = ReplyReader(maxFrameBytes: maxFrameBytes)
    }

    /// Sends `call`'s request and waits for its reply until `deadline`
    /// (set by `timeout`, which the error names).
    func perform<Result>(_ call: Call<Result>, deadline: UInt64?, timeout: RequestTimeout) async throws -> Result {
        let pending = PendingCall(call)
        enqueue(pending, frame: call.request.frame)
        let path = socket.path
        return try await pending.delivery.wait(deadline: deadline) {
            .failure(IpcError.timedOut("no reply to \(call.verb) from \(path) within \(timeout)"))
        }
    }

    private func enqueue(_ pending: any PendingReply, frame: [UInt8]) {
        enum Outcome {
            case queued(startFlush: Bool)
            /// The connection had ended: nothing was queued.
            case refused(IpcError)
            /// Queued, but the write failed: ending fails every call.
            case broken(IpcError)
        }
        let outcome = state.withLock { state -> Outcome in
            if let ended = state.ended { return .refused(ended) }
            state.waiting.append(pending)
            // Written in queue order: straight away when nothing is waiting
            // to go out, else behind what is.
            if state.outgoing.isEmpty && !state.flushing {
                do {
                    let sent = try frame.withUnsafeBytes { try socket.sendNow($0) }
                    if sent < frame.count { state.outgoing.append(contentsOf: frame[sent...]) }
                } catch {
                    return .broken((error as? IpcError) ?? .connectionLost("write to \(socket.path) failed: \(error)"))
                }
            } else {
                state.outgoing.append(contentsOf: frame)
            }
            guard !state.outgoing.isEmpty, !state.flushing else { return .queued(startFlush: false) }
            state.flushing = true
            return .queued(startFlush: true)
        }
        switch outcome {
        case .queued(let startFlush):
            if startFlush { Task { await self.flush() } }
        case .refused(let error):
            pending.fail(error)
        case .broken(let error):
            end(because: error)
        }
    }

    /// Writes what the socket could not take at once, waiting for room.
    private func flush() async {
        while true {
            let chunk = state.withLock { state -> [UInt8]? in
                if state.outgoing.isEmpty || state.ended != nil {
                    state.flushing = false
                    return nil
                }
                return state.outgoing
            }
            guard let chunk else { return }
            do {
                let sent = try chunk.withUnsafeBytes { try socket.sendNow($0) }
                if sent == 0 {
                    try await socket.waitReady(.writable, deadline: nil, what: "writing to \(socket.path)")
                    continue
                }
                state.withLock { $0.outgoing.removeFirst(sent) }
            } catch let error as IpcError {
                end(because: error)
                return
            } catch {
                end(because: .connectionLost("write to \(socket.path) failed: \(error)"))
                return
            }
        }
    }

    /// Arms the read callback: runs on the poll thread whenever the socket
    /// has bytes (or has ended), one run at a time (it re-arms itself).
    func startReading() {
        let registration = SocketPoller.shared.whenReady(socket.fd, for: .readable) { [weak self] in
            self?.readAvailable()
        }
        let ended = state.withLock { state -> Bool in
            state.reading = registration
            return state.ended != nil
        }
        if ended { SocketPoller.shared.cancel(registration) }
    }

    /// Reads what is there, hands every whole reply to its call, re-arms.
    private func readAvailable() {
        let path = socket.path
        do {
            while true {
                while let role = try reader.frames.nextFrame({ frame in readOne(frame) }) {
                    if case .corrupt(let why) = role { throw IpcError.codec("undecodable frame from \(path): \(why)") }
                }
                switch reader.frames.receive(from: socket.fd, nonBlocking: true) {
                case .bytes:
                    continue
                case .wouldBlock:
                    startReading()
                    return
                case .endOfStream:
                    end(because: closedByServer())
                    return
                case .failed(let code):
                    end(because: .connectionLost("read from \(path) failed: \(String(cString: strerror(code)))"))
                    return
                }
            }
        } catch {
            end(because: error)
        }
    }

    /// Gives one frame to the call at the head of the queue, if it is a
    /// reply; a frame nobody waits for is read on its own.
    private func readOne(_ frame: UnsafeRawBufferPointer) -> FrameRole {
        let head = state.withLock { state -> (any PendingReply)? in
            state.head < state.waiting.count ? state.waiting[state.head] : nil
        }
        guard let head else { return readUnsolicited(frame) }
        let role = head.read(frame, decoder: reader.decoder)
        if case .reply = role {
            state.withLock { state in
                state.head += 1
                state.answeredACall = true
                if state.head > 64 && state.head * 2 > state.waiting.count {
                    state.waiting.removeFirst(state.head)
                    state.head = 0
                }
            }
        }
        return role
    }

    /// A frame while no call waits: an alert (this connection subscribed
    /// through `request`), or the daemon's last word before it closes.
    private func readUnsolicited(_ frame: UnsafeRawBufferPointer) -> FrameRole {
        switch interpretAnyFrame(frame, reader.decoder) {
        case .pushed:
            return .pushed
        case .reply(.success(.err(let message, _, _))):
            state.withLock { $0.unsolicitedError = message }
            return .pushed
        case .reply:
            return .pushed
        case .corrupt(let why):
            return .corrupt(why)
        }
    }

    /// The error for an end of stream from the daemon: refused, if its last
    /// word was a refusal; else the connection was lost.
    private func closedByServer() -> IpcError {
        let said = state.withLock { $0.unsolicitedError }
        guard let said else { return .connectionLost("\(socket.path) closed the connection") }
        if said.hasPrefix("not authorized") { return .unauthorized(said) }
        return .connectionLost("\(socket.path) closed the connection: \(said)")
    }

    /// Ends the connection: every waiting call fails with `error`, later
    /// calls fail at once with it, and the owner hears of it (once).
    func end(because error: IpcError) {
        let ending = state.withLock { state -> (waiting: [any PendingReply], reading: SocketPoller.Registration?, refused: Bool)? in
            guard state.ended == nil else { return nil }
            state.ended = error
            defer {
                state.waiting = []
                state.head = 0
                state.outgoing = []
                state.reading = nil
            }
            return (Array(state.waiting[state.head...]), state.reading, state.unsolicitedError != nil && !state.answeredACall)
        }
        guard let ending else { return }
        if let reading = ending.reading { SocketPoller.shared.cancel(reading) }
        socket.shutdown()
        for pending in ending.waiting { pending.fail(error) }
        onEnd(self, Ending(error: error, refusedBeforeServing: ending.refused))
    }

    private func end(because error: any Error) {
        end(because: (error as? IpcError) ?? .connectionLost("\(socket.path): \(error)"))
    }
}

/// What a frame was to the call it was offered to.
enum FrameRole {
    /// Its reply (delivered, if the call still waits).
    case reply
    /// Pushed, or otherwise not a reply: the call waits on.
    case pushed
    /// Not a frame of the protocol.
    case corrupt(String)
}

/// A call waiting for its reply, whatever type it decodes to.
protocol PendingReply: Sendable {
    /// Reads `frame` as this call's reply. A call that gave up (timed out,
    /// cancelled) still reads it, to keep replies matched to calls.
    func read(_ frame: UnsafeRawBufferPointer, decoder: FastJSONDecoder) -> FrameRole
    /// Fails the call, if it still waits.
    func fail(_ error: any Error)
}

final class PendingCall<Result: Sendable>: PendingReply {
    let call: Call<Result>
    let delivery = Delivery<Result>()

    init(_ call: Call<Result>) {
        self.call = call
    }

    func read(_ frame: UnsafeRawBufferPointer, decoder: FastJSONDecoder) -> FrameRole {
        switch call.interpret(frame, decoder) {
        case .reply(let result):
            delivery.settle(result.mapError { $0 })
            return .reply
        case .pushed:
            return .pushed
        case .corrupt(let why):
            return .corrupt(why)
        }
    }

    func fail(_ error: any Error) {
        delivery.settle(.failure(error))
    }
}

/// The reading state of a `RequestPipeline`. Touched only by its read
/// callback, which the poll thread runs one at a time (each run re-arms the
/// next), hence unchecked.
private final class ReplyReader: @unchecked Sendable {
    var frames: FrameReader
    let decoder = FastJSONDecoder()

    init(maxFrameBytes: Int) {
        frames = FrameReader(maxFrameBytes: maxFrameBytes)
    }
}
