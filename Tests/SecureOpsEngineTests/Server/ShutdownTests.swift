import Glibc
import Testing
@testable import SecureOpsEngine

/// Shutting down: no new connections, answer what clients sent before,
/// flush, close, stop.
@Suite("Shutdown", .timeLimit(.minutes(1)))
struct ShutdownTests {
    @Test func aRequestTheKernelAlreadyHoldsIsAnsweredBeforeTheConnectionClosesAndTheLoopStops() throws {
        let server = try FakeServer()
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        _ = server.fake.takeRequests()
        // Sent, but not yet delivered by the armed receive.
        let line = FakeServer.request("echo", "before shutdown")
        #expect(write(client, line, line.utf8.count) == line.utf8.count)

        server.loop.inbox.post(.shutdown)
        server.turn()
        #expect(server.fake.takeRequests() == [.cancelAccept(listener: 0), .cancelReceive(id)])
        server.fake.completeCancellations()
        server.turn(times: 2)  // reads what the socket holds, then sends the reply
        #expect(server.fake.takeRequests() == [.send(id, TestHandler.echo("before shutdown"))])
        #expect(server.fake.accept(of: 0) == nil, "the accept is not re-armed")

        server.fake.completeSend(id)
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(server.handler.closed[id] == .shutdown)
        #expect(server.turn() == false, "the loop stops once every connection has closed")
    }
}
