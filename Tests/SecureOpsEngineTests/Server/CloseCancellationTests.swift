import Glibc
import Testing
@testable import SecureOpsEngine

/// Closing a connection cancels what the kernel holds for it; the socket is
/// released and closed only once the last of those operations has come
/// back (`close()` alone would not stop a multishot receive, and a send
/// reads its memory until it completes).
@Suite("Closing with operations in flight", .timeLimit(.minutes(1)))
struct CloseCancellationTests {
    /// A connection with its receive armed and its reply's send stuck in
    /// flight, closed by the stuck-send deadline (lowered to zero once the
    /// send is in flight, and checked at once). Returns it, its descriptor
    /// and the client's end.
    func closedWhileBusy(_ server: FakeServer) throws -> (id: ConnectionID, fd: Int32, client: Int32) {
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        server.fake.receive(id, FakeServer.request("echo", "stuck"))
        server.turn(times: 2)
        #expect(server.fake.receive(of: id) == .armed)
        #expect(server.fake.send(of: id) == .armed)
        var limits = server.loop.limits
        limits.stuckSendTimeout = .zero
        server.loop.inbox.post(.updateLimits(limits))
        server.loop.timers.housekeepNow()
        server.turn()
        return (id, fd, client)
    }

    @Test func theSocketIsReleasedAndClosedOnlyAfterTheLastCancelledOperationComesBack() throws {
        let server = try FakeServer()
        let (id, fd, client) = try closedWhileBusy(server)
        #expect(server.fake.takeRequests().last == .cancelAll(id))
        #expect(server.fake.receive(of: id) == .cancelling)
        #expect(server.fake.send(of: id) == .cancelling)
        #expect(!FakeServer.seesEndOfFile(client))

        server.fake.endReceive(id, .cancelled)
        server.turn()
        #expect(server.fake.takeRequests() == [], "the send is still in flight")
        #expect(!FakeServer.seesEndOfFile(client))
        #expect(server.connection(id) != nil)

        server.fake.failSend(id, errno: ECANCELED)
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(FakeServer.seesEndOfFile(client))
        #expect(server.connection(id) == nil)
        #expect(server.handler.closed[id] == .stuckSend)
        #expect(server.statistics.slowDisconnects == 1)
    }

    @Test func aSendThatCompletesPartlyAfterTheCloseIsNotReissued() throws {
        let server = try FakeServer()
        let (id, fd, client) = try closedWhileBusy(server)
        _ = server.fake.takeRequests()
        server.fake.endReceive(id, .cancelled)
        // Some bytes left before the cancel took hold.
        server.fake.completeSend(id, bytes: 3)
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(FakeServer.seesEndOfFile(client))
    }
}
