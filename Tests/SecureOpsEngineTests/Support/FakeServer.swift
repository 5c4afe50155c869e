import Dispatch
import Glibc
import Logging
import SecureOpsSystem
import Testing
@testable import SecureOpsEngine

/// An `EventLoop` on a `FakeBackend`, serving `TestHandler`, driven by the
/// test one turn at a time: the test plays the kernel through `fake` and
/// the clients through the other ends of socket pairs.
///
/// The listener is a real Unix socket in a private directory (the loop
/// takes nothing else), but no client ever connects through it: `connect`
/// hands the loop one end of a socket pair as if the fake's armed accept
/// had returned it. Connections need a real socket: they are admitted with
/// `SO_PEERCRED`, and the loop closes the descriptor itself.
final class FakeServer {
    let fake: FakeBackend
    let loop: EventLoop
    let handler = TestHandler()
    private let counters = EngineCounters()
    private let directory: String
    private var clients: [Int32] = []

    init(configure: (inout EngineConfiguration) -> Void = { _ in }) throws {
        var template = Array("/tmp/so-fake-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw FakeServerError("mkdtemp failed (errno \(errno))") }
        directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var configuration = EngineConfiguration(socketPath: directory + "/fake.sock")
        configure(&configuration)
        var logger = Logger(label: "fake-server")
        logger.logLevel = .error
        configuration.socketMode = 0o600
        configuration.socketDirectoryMode = 0o700
        configuration.listenBacklog = 16
        let listener = try Listener.open(configuration.listeners[0], configuration: configuration, logger: logger)
        let inbox = try Inbox()
        let fake = FakeBackend(wakeFD: inbox.eventFD)
        self.fake = fake
        // A journal is written as on io_uring: by the loop, through the fake.
        let journalWrites = configuration.journal.map { journal in
            JournalWrites.ring(JournalRingWriter(journal: journal, backend: fake, inbox: inbox, now: SystemClock.monotonicNanoseconds()))
        }
        loop = EventLoop(
            configuration: configuration, listeners: [listener], backend: fake, inbox: inbox,
            counters: counters, logger: logger, connectionCapacity: 64, journalWrites: journalWrites)
        loop.dispatcher = HandlerDispatcher(handler: handler, loop: loop, epoch: StreamEpoch(rawValue: 1))
        // What `EventLoop.run` does before its first turn.
        inbox.bindToCurrentThread()
        for index in loop.listeners.indices { loop.armAccept(index) }
    }

    deinit {
        for connection in loop.connections.all { Glibc.close(connection.fd) }
        for index in loop.listeners.indices { loop.listeners[index]?.close(logger: loop.logger) }
        for fd in clients { Glibc.close(fd) }
        rmdir(directory)
    }

    /// One turn of the loop, not waiting: the fake delivers what is queued.
    /// False once a shutdown has finished draining.
    @discardableResult
    func turn() -> Bool {
        loop.turn(timeoutNanoseconds: 0)
    }

    func turn(times: Int) {
        for _ in 0..<times { turn() }
    }

    /// Turns until `condition` holds, at most `limit` times, the fake's
    /// wait blocking up to 10 ms each (it wakes early when another thread
    /// posts to the inbox): for what takes another thread (offloaded work)
    /// or real time (an accept's rest). Returns whether it held.
    @discardableResult
    func turn(until condition: () -> Bool, limit: Int = 200) -> Bool {
        for _ in 0..<limit {
            if condition() { return true }
            loop.turn(timeoutNanoseconds: 10_000_000)
        }
        return condition()
    }

    /// A client connects: the fake's accept returns the server's end of a
    /// new socket pair and the loop admits it. Returns the connection and
    /// the client's end.
    @discardableResult
    func connect() throws -> (id: ConnectionID, client: Int32) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw FakeServerError("socketpair failed (errno \(errno))")
        }
        clients.append(pair[1])
        fake.accept(pair[0])
        turn()
        let connection = try #require(loop.connections.all.first { $0.fd == pair[0] }, "the loop did not admit the connection")
        return (connection.id, pair[1])
    }

    /// The client goes away entirely (both directions shut, as `close`
    /// would): the loop's end of the socket reports a hang-up.
    func disconnect(_ client: Int32) {
        shutdown(client, Int32(SHUT_RDWR))
    }

    /// A request line as `TestHandler` reads it.
    static func request(_ op: String, _ text: String = "") -> String {
        #"{"op":"\#(op)","text":"\#(text)"}"# + "\n"
    }

    /// What the connection's client has been sent so far (per the fake).
    func sent(to id: ConnectionID) -> String { fake.sent(to: id) }

    /// The loop's connection for `id`, while it is in the table.
    func connection(_ id: ConnectionID) -> Connection? { loop.connections.lookup(id) }

    var statistics: EngineStatistics { counters.snapshot }

    /// Publishes `{"event":text,"sequence":N}` to the broadcast stream, as
    /// an embedder would; returns the frame.
    @discardableResult
    func publish(_ text: String) -> String {
        var frame = ""
        _ = loop.inbox.publish { sequence, _, writer in
            frame = Self.event(text, sequence: sequence)
            writer.bytes.append(contentsOf: frame.utf8)
        }
        return frame
    }

    static func event(_ text: String, sequence: UInt64) -> String {
        #"{"event":"\#(text)","sequence":\#(sequence)}"# + "\n"
    }

    /// Whether the client's end reads end-of-file: the loop has closed its
    /// end. (Nothing else ever arrives on it: sends go to the fake.)
    static func seesEndOfFile(_ client: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(client, &byte, 1, Int32(MSG_DONTWAIT)) == 0
    }
}

struct FakeServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The smallest protocol that exercises the server layer:
///
/// ```
/// {"op":"echo","text":"a"}   -> {"echo":"a"}
/// {"op":"later","text":"b"}  -> {"later":"b"}, from the Dispatch pool
///                               once the test calls `finishLater()`
/// {"op":"watch"}             -> {"watching":N}, then every broadcast frame
/// {"op":"bye"}               -> {"bye":true}, then the connection closes
/// ```
final class TestHandler: RequestHandler {
    /// Holds each `later` on the pool until the test lets one finish, so
    /// when its reply arrives is the test's choice, not the pool's timing.
    private let laterGate = DispatchSemaphore(value: 0)

    func finishLater() { laterGate.signal() }

    struct Request: Decodable {
        var op: String
        var text: String?
    }

    /// Frames handled, in order.
    private(set) var handled: [String] = []
    private(set) var closed: [ConnectionID: CloseReason] = [:]

    func admit(_ connection: ConnectionInfo) -> Admission { .admit }

    func handle(_ request: Request, context: RequestContext) throws -> Reply {
        let text = request.text ?? ""
        handled.append("\(request.op) \(text)")
        switch request.op {
        case "echo":
            context.response.bytes += Self.echo(text).utf8
            return .respond
        case "later":
            let gate = laterGate
            return .offload {
                gate.wait()
                return OffloadedReply(bytes: Array(Self.later(text).utf8))
            }
        case "watch":
            let next = context.subscribe(since: nil)
            context.response.bytes += Self.watching(next).utf8
            return .respond
        case "bye":
            context.response.bytes += Self.bye.utf8
            return .respondAndClose
        default:
            throw FakeServerError("unknown op \(request.op)")
        }
    }

    func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason) {
        closed[connection.id] = reason
    }

    static func echo(_ text: String) -> String { #"{"echo":"\#(text)"}"# + "\n" }
    static func later(_ text: String) -> String { #"{"later":"\#(text)"}"# + "\n" }
    static func watching(_ next: UInt64) -> String { #"{"watching":\#(next)}"# + "\n" }
    static let bye = #"{"bye":true}"# + "\n"
}
