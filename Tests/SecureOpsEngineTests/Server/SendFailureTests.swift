import Glibc
import Testing
@testable import SecureOpsEngine

/// A send that fails ends the connection: its peer cannot be answered.
@Suite("Failed sends", .timeLimit(.minutes(1)))
struct SendFailureTests {
    @Test(arguments: [(EPIPE, CloseReason.peerClosed), (ECONNRESET, .peerClosed), (EIO, .sendFailed(EIO))])
    func aFailedSendClosesTheConnection(errno code: Int32, reason: CloseReason) throws {
        let server = try FakeServer()
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        server.fake.receive(id, FakeServer.request("echo", "a"))
        server.turn(times: 2)
        _ = server.fake.takeRequests()
        server.fake.failSend(id, errno: code)
        server.turn()
        // Its receive is still armed: cancelled, and the socket closed once
        // the cancellation comes back.
        #expect(server.fake.takeRequests() == [.cancelAll(id)])
        server.fake.completeCancellations()
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(server.handler.closed[id] == reason)
        #expect(FakeServer.seesEndOfFile(client))
    }
}
