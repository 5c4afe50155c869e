import Glibc
import Testing
@testable import SecureOpsEngine

/// Multishot receives end (docs/DESIGN.md, invariant 7): one the kernel
/// merely stopped is re-armed; at end of stream the peer has nothing more
/// to say and the receive stays down.
@Suite("Receives that end", .timeLimit(.minutes(1)))
struct ReceiveEndTests {
    @Test func aReceiveTheKernelInterruptsIsReArmedAndServesOn() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        _ = server.fake.takeRequests()
        // The last bytes of a multishot receive come with its end.
        server.fake.receive(id, FakeServer.request("echo", "a"))
        server.fake.endReceive(id, .interrupted)
        server.turn()
        #expect(server.fake.receive(of: id) == nil)
        server.turn()
        #expect(server.fake.takeRequests() == [.send(id, TestHandler.echo("a")), .armReceive(id)])
        server.fake.completeSend(id)
        server.fake.receive(id, FakeServer.request("echo", "b"))
        server.turn(times: 2)
        #expect(server.fake.takeRequests() == [.send(id, TestHandler.echo("b"))])
    }

    @Test func atEndOfStreamTheReceiveIsNotReArmedAndTheConnectionClosesAfterItsReply() throws {
        let server = try FakeServer()
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        _ = server.fake.takeRequests()
        shutdown(client, Int32(SHUT_WR))  // the client half-closes: it still reads
        server.fake.receive(id, FakeServer.request("echo", "last"))
        server.fake.endReceive(id, .endOfStream)
        server.turn(times: 3)
        #expect(server.fake.takeRequests() == [.send(id, TestHandler.echo("last"))])
        server.fake.completeSend(id)
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(server.sent(to: id) == TestHandler.echo("last"))
        #expect(server.handler.closed[id] == .peerClosed)
    }

    @Test func aSubscriberThatHalfClosesKeepsItsStreamUntilItHangsUp() throws {
        let server = try FakeServer()
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        server.fake.receive(id, FakeServer.request("watch"))
        server.turn(times: 2)
        server.fake.completeSend(id)
        shutdown(client, Int32(SHUT_WR))
        server.fake.endReceive(id, .endOfStream)
        server.turn()
        _ = server.fake.takeRequests()
        let frame = server.publish("still streaming")
        server.turn(times: 2)
        #expect(server.fake.takeRequests() == [.send(id, frame)])
        #expect(server.fake.hangup(of: id) == .armed)
        server.fake.completeSend(id)
        server.fake.hangUp(id)
        server.turn()
        #expect(server.fake.takeRequests() == [.release(fd: fd)])
        #expect(server.handler.closed[id] == .peerClosed)
    }
}
