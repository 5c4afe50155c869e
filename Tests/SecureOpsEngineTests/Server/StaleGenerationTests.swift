import Glibc
import Testing
@testable import SecureOpsEngine

/// Events carry the connection's slot and generation: one for a connection
/// that is gone finds nothing, even when a new connection took its slot
/// and, likely, its descriptor (docs/DESIGN.md, invariant 2).
@Suite("Stale generations", .timeLimit(.minutes(1)))
struct StaleGenerationTests {
    @Test func eventsForAClosedConnectionDoNotTouchTheOneThatReusedItsSlot() throws {
        let server = try FakeServer()
        let (old, oldClient) = try server.connect()
        server.disconnect(oldClient)
        server.fake.endReceive(old, .endOfStream)
        server.turn()
        #expect(server.connection(old) == nil)

        let (new, _) = try server.connect()
        #expect(new.slot == old.slot && new.generation != old.generation)
        server.fake.receive(new, FakeServer.request("echo", "new"))
        server.turn(times: 2)
        let inFlight = try #require(server.fake.sendInFlight(new))
        _ = server.fake.takeRequests()

        // What a confused kernel might still say about the old connection.
        server.fake.inject(.received(old, Array(FakeServer.request("echo", "stale").utf8)))
        server.fake.inject(.sendCompleted(old, .bytes(inFlight.utf8.count)))
        server.fake.inject(.receiveEnded(old, .interrupted))
        server.fake.inject(.hangupCompleted(old, result: Int32(POLLHUP)))
        server.turn(times: 3)

        #expect(server.handler.handled == ["echo new"])
        #expect(server.fake.takeRequests() == [])
        let connection = try #require(server.connection(new))
        #expect(connection.state == .open)
        #expect(connection.send != nil, "its send is still in flight")
        #expect(connection.receive == .armed)
        // And it carries on.
        server.fake.completeSend(new)
        server.turn()
        #expect(server.sent(to: new) == TestHandler.echo("new"))
        #expect(server.sent(to: old) == "")
    }
}
