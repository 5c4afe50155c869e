import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Running out of things through the real kernel: receive buffers,
/// descriptors, connection slots. The daemon keeps serving and says why.
@Suite("Resource exhaustion", .timeLimit(.minutes(5)))
struct ResourceExhaustionTests {
    /// On io_uring every receive draws from one group of provided buffers;
    /// 16 of them for 10,000 senders run dry again and again. epoll reads
    /// into one buffer per turn and has nothing to run out of: the same
    /// load must be answered there too, with no exhaustion counted.
    @Test(arguments: ["io_uring", "epoll"])
    func tenThousandSimultaneousSendersShareSixteenReceiveBuffersWithoutLossOrSpinning(backend: String) throws {
        let daemon = try DaemonProcess(extraArguments: ["--receive-buffers", "16", "--io-backend", backend])
        let tool = try compileFixture("fanout-check")
        let (status, output) = try run(tool, ["pings", daemon.socketPath, "10000"])
        #expect(status == 0, "\(output)")
        #expect(output.contains(#""answered":10000"#))
        let stats = try daemon.connect().status()
        let exhaustions = stats.receiveBufferExhaustions ?? 0
        guard backend == "io_uring" else {
            #expect(exhaustions == 0)
            return
        }
        #expect(exhaustions > 0, "16 buffers for 10,000 senders must run dry")
        // Starved receives are re-armed a few at a time, not all at once in
        // a loop: about one -ENOBUFS per starved connection, not millions.
        #expect(exhaustions < 100_000, "\(exhaustions) -ENOBUFS completions: the loop is spinning")
    }

    @Test func whenDescriptorsRunOutClientsWaitInTheBacklogAndAreServedLater() throws {
        let daemon = try DaemonProcess(
            extraArguments: ["--max-connections", "1000"], launcher: ["/usr/bin/prlimit", "--nofile=48:48"])
        // More clients than the daemon has descriptors for.
        var clients: [RawClient] = []
        for _ in 0..<80 {
            let client = try RawClient(path: daemon.socketPath)
            try client.write("{\"type\":\"ping\"}\n")
            clients.append(client)
        }
        var served: [RawClient] = []
        var waiting: [RawClient] = []
        // The daemon has taken what it can once an accept fails for want of
        // descriptors; the first client was accepted before that.
        #expect(eventually(within: 10) { daemon.log.contains("accept failed: Too many open files; retrying") })
        #expect(clients[0].readLines(1, timeout: 10) == [#"{"type":"ok"}"#])
        served.append(clients[0])
        for client in clients.dropFirst() {
            if client.readLines(1, timeout: 0.05) == [#"{"type":"ok"}"#] { served.append(client) } else { waiting.append(client) }
        }
        clients.removeAll()
        #expect(!served.isEmpty)
        #expect(!waiting.isEmpty, "48 descriptors cannot hold 80 connections")
        served.removeAll() // closing them frees descriptors
        // Each waiting client is served once a descriptor is free; closing it
        // after its answer frees one for the next (there may be more waiting
        // clients than the daemon can hold at once).
        while !waiting.isEmpty {
            let client = waiting.removeFirst()
            #expect(client.readLines(1, timeout: 10) == [#"{"type":"ok"}"#])
        }
        #expect(daemon.log.contains("accept failed: Too many open files; retrying"))
    }

    @Test func atTheConnectionLimitNewClientsGetAClearErrorNotAReset() throws {
        let daemon = try DaemonProcess(extraArguments: ["--max-connections", "8"])
        var held: [RawClient] = []
        for _ in 0..<8 {
            let client = try RawClient(path: daemon.socketPath)
            try client.write("{\"type\":\"ping\"}\n")
            #expect(client.readLines(1) == [#"{"type":"ok"}"#])
            held.append(client)
        }
        // The daemon answers the ninth client at once, before it sends anything.
        let extra = try RawClient(path: daemon.socketPath)
        #expect(extra.readLines(1) == [#"{"type":"err","message":"server is at its connection limit (8); try again later"}"#])
        #expect(extra.isClosedByPeer())
        held.removeAll()
        // Once a slot frees up, the next client is served.
        var answered = false
        for _ in 0..<100 where !answered {
            if let connection = try? daemon.connect(), (try? connection.ping()) != nil { answered = true } else { usleep(20_000) }
        }
        #expect(answered)
    }
}
