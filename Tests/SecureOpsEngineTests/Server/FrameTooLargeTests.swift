import Glibc
import Testing
@testable import SecureOpsEngine

/// A frame over `maxFrameBytes` gets one error frame, then the connection
/// closes; nothing after it is handled.
@Suite("Oversized frames", .timeLimit(.minutes(1)))
struct FrameTooLargeTests {
    let error = #"{"type":"err","message":"frame exceeds the 32-byte limit; closing the connection"}"# + "\n"

    @Test func anOversizedFrameGetsOneErrorFrameThenTheConnectionCloses() throws {
        let server = try FakeServer { $0.limits.maxFrameBytes = 32 }
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        _ = server.fake.takeRequests()
        server.fake.receive(id, String(repeating: "x", count: 40) + "\n" + FakeServer.request("echo", "after"))
        server.turn(times: 2)
        #expect(server.fake.takeRequests() == [.cancelReceive(id), .send(id, error)])
        server.fake.completeCancellations()
        server.fake.completeSend(id)
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(server.sent(to: id) == error)
        #expect(server.handler.handled == [])
        #expect(server.handler.closed[id] == .frameTooLarge)
        #expect(server.statistics.oversizedFrames == 1)
        #expect(FakeServer.seesEndOfFile(client))
    }

    @Test func anUnfinishedFrameThatGrowsPastTheLimitIsRefusedBeforeItsNewline() throws {
        let server = try FakeServer { $0.limits.maxFrameBytes = 32 }
        let (id, _) = try server.connect()
        server.fake.receive(id, String(repeating: "y", count: 20))
        server.turn()
        #expect(server.statistics.oversizedFrames == 0)
        server.fake.receive(id, String(repeating: "y", count: 20))
        server.turn(times: 2)
        #expect(server.fake.sendInFlight(id) == error)
    }
}
