import SecureOpsSystem
import Dispatch
import Foundation
import Glibc
import SecureOpsClient
import SecureOpsEngine
import Synchronization
import Testing

/// The embedding API: engines with handlers and protocols of their own,
/// in this process, talked to over their real sockets.
@Suite("Embedding the engine", .timeLimit(.minutes(2)))
struct EngineEmbeddingTests {
    typealias Counters = CounterHandler<FastCounterRequest>

    @Test func twoEnginesInOneProcessServeAndBroadcastIndependently() throws {
        let scratch = try ScratchDirectory()
        let a = try startEngine(Counters(tag: "a"), path: scratch.socket("a"))
        let b = try startEngine(CounterHandler<PlainCounterRequest>(tag: "b"), path: scratch.socket("b"))
        #expect(a.epoch != b.epoch)

        let watchA = try SecureOpsConnection.connect(to: scratch.socket("a"))
        let watchB = try SecureOpsConnection.connect(to: scratch.socket("b"))
        try watchA.send(line: #"{"op":"watch"}"#)
        try watchB.send(line: #"{"op":"watch"}"#)
        #expect(try object(watchA.readLine())["epoch"] as? String == a.epoch.description)
        #expect(try object(watchB.readLine())["epoch"] as? String == b.epoch.description)

        let clientA = try SecureOpsConnection.connect(to: scratch.socket("a"))
        let clientB = try SecureOpsConnection.connect(to: scratch.socket("b"))
        for _ in 0..<3 {
            try clientA.send(line: #"{"op":"add","name":"x"}"#)
            #expect(try object(clientA.readLine())["tag"] as? String == "a")
        }
        try clientB.send(line: #"{"op":"add","name":"x","by":10}"#)
        #expect(try object(clientB.readLine())["value"] as? Int == 10)
        // Published from this thread, not a handler: engine A only.
        let direct = try a.publish { sequence, _, writer in
            writer.beginObject()
            writer.key("event")
            writer.string("direct")
            writer.key("sequence")
            writer.uint(sequence)
            writer.endObject()
            writer.newline()
        }
        #expect(direct == 4)

        let seenA = try (0..<4).map { _ in try object(watchA.readLine()) }
        #expect(seenA.map { $0["sequence"] as? Int } == [1, 2, 3, 4])
        #expect(seenA.prefix(3).allSatisfy { $0["tag"] as? String == "a" })
        #expect(seenA[3]["event"] as? String == "direct")
        let seenB = try object(watchB.readLine())
        #expect(seenB["sequence"] as? Int == 1 && seenB["tag"] as? String == "b" && seenB["value"] as? Int == 10)
        #expect(watchB.staysQuiet(for: 0.3), "engine B saw engine A's broadcast")
        #expect(a.statistics.broadcastPublished == 4)
        #expect(b.statistics.broadcastPublished == 1)

        // Stopping one leaves the other serving.
        a.shutdownAndWait()
        #expect(!FileManager.default.fileExists(atPath: scratch.socket("a")))
        #expect(try watchA.readLine(timeout: 5) == nil, "A's watcher is closed")
        try clientB.send(line: #"{"op":"get","name":"x"}"#)
        #expect(try object(clientB.readLine())["value"] as? Int == 10)
        b.shutdownAndWait()
    }

    @Test func anEngineStartsStopsAndANewOneStartsOnTheSamePath() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.socket()
        var epochs: Set<StreamEpoch> = []
        for round in 0..<3 {
            let engine = try startEngine(Counters(tag: "round\(round)"), path: path)
            #expect(engine.hasStarted)
            epochs.insert(engine.epoch)
            let client = try SecureOpsConnection.connect(to: path)
            try client.send(line: #"{"op":"add","name":"n"}"#)
            // A fresh engine: fresh state and sequences from 1.
            let reply = try object(client.readLine())
            #expect(reply["tag"] as? String == "round\(round)" && reply["value"] as? Int == 1 && reply["sequence"] as? Int == 1)
            engine.shutdownAndWait()
            #expect(!FileManager.default.fileExists(atPath: path), "the socket file is removed on shutdown")
            #expect(try client.readLine(timeout: 5) == nil)
            // An engine runs once.
            #expect(throws: EngineError.self) { try engine.start(handler: Counters(tag: "again")) }
        }
        #expect(epochs.count == 3)
    }

    @Test func aSecondEngineOnALivePathIsRefusedWithAnActionableError() throws {
        let scratch = try ScratchDirectory()
        let first = try startEngine(Counters(tag: "first"), path: scratch.socket())
        let error = #expect(throws: EngineError.self) { _ = try startEngine(Counters(tag: "second"), path: scratch.socket()) }
        #expect(error == .socketInUse(path: scratch.socket()))
        #expect(error?.description.contains("already answering on \(scratch.socket())") == true)
        // The first one is untouched.
        let client = try SecureOpsConnection.connect(to: scratch.socket())
        try client.send(line: #"{"op":"get","name":"x"}"#)
        #expect(try object(client.readLine())["tag"] as? String == "first")
        first.shutdownAndWait()
    }

    @Test func startUpErrorsNameTheProblemAndTheFix() throws {
        let scratch = try ScratchDirectory()
        let long = scratch.path + "/" + String(repeating: "s", count: 120) + ".sock"
        let tooLong = #expect(throws: EngineError.self) { _ = try startEngine(Counters(tag: "x"), path: long) }
        #expect(tooLong == .socketPathTooLong(path: long, bytes: long.utf8.count))
        #expect(tooLong?.description.contains("more than the 107 a Unix socket address holds") == true)

        let file = scratch.path + "/not-a-socket"
        _ = FileManager.default.createFile(atPath: file, contents: Data("keep me".utf8))
        let occupied = #expect(throws: EngineError.self) { _ = try startEngine(Counters(tag: "x"), path: file) }
        #expect(occupied?.description.contains("refusing to replace it") == true)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "keep me")
    }

    @Test func eightThreadsPublishingConcurrentlyKeepTheirOrderAndEverythingIsDelivered() throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "p"), path: scratch.socket())
        let watcher = try SecureOpsConnection.connect(to: scratch.socket())
        try watcher.send(line: #"{"op":"watch"}"#)
        _ = try watcher.readLine()

        let publishers = 8, perPublisher = 2_000
        let returned = Locked<[[UInt64]]>(Array(repeating: [], count: publishers))
        let start = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for publisher in 0..<publishers {
            done.enter()
            let thread = Thread {
                start.wait()
                var sequences: [UInt64] = []
                sequences.reserveCapacity(perPublisher)
                for index in 0..<perPublisher {
                    // 0 (never a sequence) if the engine had stopped: the checks below fail.
                    sequences.append((try? engine.publish { sequence, _, writer in
                        writer.beginObject()
                        writer.key("sequence")
                        writer.uint(sequence)
                        writer.key("publisher")
                        writer.int(publisher)
                        writer.key("index")
                        writer.int(index)
                        writer.endObject()
                        writer.newline()
                    }) ?? 0)
                }
                returned.withLock { $0[publisher] = sequences }
                done.leave()
            }
            thread.start()
        }
        for _ in 0..<publishers { start.signal() }

        var nextIndex = Array(repeating: 0, count: publishers)
        var expectedSequence: UInt64 = 1
        var problems: [String] = []
        for _ in 0..<(publishers * perPublisher) {
            guard let line = try watcher.readLine(timeout: 20) else {
                problems.append("stream ended after sequence \(expectedSequence - 1)")
                break
            }
            let frame = try object(line)
            let sequence = UInt64(frame["sequence"] as! Int)
            let publisher = frame["publisher"] as! Int, index = frame["index"] as! Int
            if sequence != expectedSequence { problems.append("sequence \(sequence), expected \(expectedSequence)") }
            if index != nextIndex[publisher] { problems.append("publisher \(publisher): index \(index) after \(nextIndex[publisher] - 1)") }
            expectedSequence = sequence + 1
            nextIndex[publisher] = index + 1
            if problems.count > 5 { break }
        }
        done.wait()
        #expect(problems.isEmpty, "\(problems)")
        #expect(nextIndex == Array(repeating: perPublisher, count: publishers))
        // What publish returned agrees with what was delivered: each
        // publisher's sequences rise, and together they are 1...N once each.
        let all = returned.withLock { $0 }
        #expect(all.allSatisfy { zip($0, $0.dropFirst()).allSatisfy { $0 < $1 } })
        #expect(Set(all.joined()) == Set(1...UInt64(publishers * perPublisher)))
        #expect(engine.statistics.lastSequence == UInt64(publishers * perPublisher))
        engine.shutdownAndWait()
    }

    /// A frame that closes the connection is the last one handled, even
    /// while an earlier offloaded reply holds the error back and other
    /// replies drain meanwhile (a drained send used to resume reading).
    @Test func nothingAfterAFrameThatClosesTheConnectionIsHandled() throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "t"), path: scratch.socket()) { $0.limits.maxFrameBytes = 128 }
        let client = try SecureOpsConnection.connect(to: scratch.socket())
        let oversized = #"{"op":"get","name":""# + String(repeating: "x", count: 200) + #""}"#
        try client.sendRaw(Array("{\"op\":\"get\",\"name\":\"x\"}\n{\"op\":\"slow\"}\n\(oversized)\n".utf8))
        #expect(try object(client.readLine())["value"] as? Int == 0)
        // The reply to `get` has been sent; `slow` still runs.
        try client.send(line: #"{"op":"add","name":"x"}"#)
        #expect(try object(client.readLine())["slow"] as? Bool == true)
        #expect(try client.readLine()?.contains("frame exceeds the 128-byte limit") == true)
        #expect(try client.readLine(timeout: 5) == nil)
        let other = try SecureOpsConnection.connect(to: scratch.socket())
        try other.send(line: #"{"op":"get","name":"x"}"#)
        #expect(try object(other.readLine())["value"] as? Int == 0, "the add after the oversized frame was handled")
        engine.shutdownAndWait()
    }

    @Test func aHandlerThatThrowsGetsTheClientAnErrAndTheEngineLivesOn() throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "t"), path: scratch.socket())
        let client = try SecureOpsConnection.connect(to: scratch.socket())
        // Pipelined: inline and offloaded, throwing and not; replies in order.
        try client.sendRaw(Array("""
            {"op":"add","name":"x"}
            {"op":"fail"}
            {"op":"slow"}
            {"op":"failLater"}
            {"op":"nonsense"}
            {"op":"get","name":"x"}
            {"op":42}

            """.utf8))
        let replies = try (0..<7).map { _ in try client.readLine() ?? "<closed>" }
        #expect(try object(replies[0])["value"] as? Int == 1)
        #expect(replies[1] == #"{"type":"err","message":"fail was asked for"}"#)
        #expect(try object(replies[2])["slow"] as? Bool == true)
        #expect(replies[3] == #"{"type":"err","message":"failLater was asked for"}"#)
        #expect(replies[4] == #"{"type":"err","message":"unknown op nonsense"}"#)
        #expect(try object(replies[5])["value"] as? Int == 1)
        #expect(replies[6].contains(#""type":"err""#) && replies[6].contains("op"), "a decoding error names the field: \(replies[6])")
        // Same connection, and a new one, still served.
        try client.send(line: #"{"op":"get","name":"x"}"#)
        #expect(try object(client.readLine())["value"] as? Int == 1)
        let other = try SecureOpsConnection.connect(to: scratch.socket())
        try other.send(line: #"{"op":"bye"}"#)
        #expect(try object(other.readLine())["ok"] as? Bool == true)
        #expect(try other.readLine(timeout: 5) == nil, "respondAndClose closes after the reply")
        #expect(engine.statistics.malformedFrames == 1)
        engine.shutdownAndWait()
    }

    /// `await engine.shutdown()` from async code: what was received is
    /// answered (slow offloaded requests included) before it returns.
    @Test func shutdownAnswersWhatWasReceivedBeforeItReturns() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "s"), path: scratch.socket())
        let client = try SecureOpsConnection.connect(to: scratch.socket())
        try client.sendRaw(Array(String(repeating: "{\"op\":\"slow\"}\n{\"op\":\"get\"}\n", count: 3).utf8))
        // Let the engine read them, then shut down while the slow ones run.
        #expect(await eventually { engine.statistics.framesReceived == 6 })
        await engine.shutdown()
        let replies = try (0..<6).map { _ in try client.readLine(timeout: 5) }
        #expect(replies.allSatisfy { $0?.contains(#""ok":true"#) == true }, "\(replies)")
        #expect(try client.readLine(timeout: 5) == nil)
    }

    /// Work that outlives the grace period: its client gets an error frame
    /// saying so (after every reply that was ready before it) rather than a
    /// bare end of stream, and the work sees its cancellation signal.
    @Test func anOffloadThatOutlivesTheGracePeriodIsAnsweredWithAnErrorAndToldToStop() throws {
        let scratch = try ScratchDirectory()
        let sawCancellation = Flag()
        let engine = try startEngine(NeverEndingWork(sawCancellation: sawCancellation), path: scratch.socket()) {
            $0.shutdownGracePeriod = .milliseconds(300)
        }
        let client = try SecureOpsConnection.connect(to: scratch.socket())
        try client.send(line: #"{"type":"ping"}"#)
        try client.send(line: #"{"type":"audit"}"#)
        try client.send(line: #"{"type":"ping"}"#)
        #expect(try client.readLine() == #"{"type":"ok"}"#)
        #expect(eventually { engine.statistics.framesReceived == 3 })
        engine.shutdownAndWait()
        #expect(try client.readLine() == #"{"type":"err","message":"shutting down: this request did not finish within the 0.3 seconds grace period and was abandoned"}"#)
        #expect(try client.readLine() == #"{"type":"ok"}"#, "the ping's reply, ready behind it, still goes out in order")
        #expect(try client.readLine() == nil)
        #expect(eventually { sawCancellation.isSet }, "the work saw OffloadCancellation.current raised")
    }

    @Test func publishingIntoAStoppedEngineThrowsAndPublishesNothing() throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "p"), path: scratch.socket())
        let before = try engine.publish { sequence, _, writer in
            writer.beginObject()
            writer.key("n")
            writer.uint(sequence)
            writer.endObject()
            writer.newline()
        }
        engine.shutdownAndWait()
        var encoded = false
        #expect(throws: EngineError.stopped) {
            try engine.publish { _, _, _ in encoded = true }
        }
        #expect(!encoded, "nothing is encoded for a frame that would go nowhere")
        #expect(engine.statistics.lastSequence == before)
    }

    @Test func waitForStopReturnsWhenAnotherTaskShutsTheEngineDown() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "w"), path: scratch.socket())
        async let stopped: Void = engine.waitForStop()
        engine.requestShutdown()
        await stopped
        #expect(!FileManager.default.fileExists(atPath: scratch.socket()))
        let unstarted = try Engine<Counters>(configuration: EngineConfiguration(socketPath: scratch.socket("never")))
        #expect(!unstarted.hasStarted)
        // None of these waits for a loop thread that never existed.
        await unstarted.waitForStop()
        await unstarted.shutdown()
        unstarted.shutdownAndWait()
        unstarted.waitUntilStopped()
    }
}

/// A frame as a dictionary (Foundation, in tests only).
func object(_ line: String?) throws -> [String: Any] {
    guard let line else { throw TestFailure("the connection closed where a frame was expected") }
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(line)")
    }
    return object
}

/// `audit` is offloaded work that runs until it is told to stop (or 10 s);
/// `ping` answers inline.
final class NeverEndingWork: RequestHandler {
    typealias Request = IpcRequest
    let sawCancellation: Flag

    init(sawCancellation: Flag) {
        self.sawCancellation = sawCancellation
    }

    func admit(_ connection: ConnectionInfo) -> Admission { .admit }

    func handle(_ request: IpcRequest, context: RequestContext) throws -> Reply {
        guard case .audit = request else {
            context.response.bytes.append(contentsOf: OkFrame.empty)
            return .respond
        }
        let sawCancellation = self.sawCancellation
        return .offload {
            let deadline = Date().addingTimeInterval(10)
            while OffloadCancellation.current?.isCancelled != true && Date() < deadline {
                usleep(1000) // a step of long work
            }
            if OffloadCancellation.current?.isCancelled == true { sawCancellation.set() }
            return OffloadedReply(bytes: OkFrame.empty)
        }
    }
}

/// A flag one thread raises and another waits for.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)
    var isSet: Bool { raised.load(ordering: .acquiring) }
    func set() { raised.store(true, ordering: .releasing) }
}
