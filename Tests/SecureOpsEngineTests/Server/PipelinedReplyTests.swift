import Testing
@testable import SecureOpsEngine

/// Replies leave in request order, however many requests one receive holds
/// and however their handlers finish (docs/DESIGN.md, invariant 3).
@Suite("Pipelined requests", .timeLimit(.minutes(1)))
struct PipelinedReplyTests {
    @Test func repliesToRequestsInOneReceiveLeaveInOneSendInRequestOrder() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        _ = server.fake.takeRequests()
        server.fake.receive(id, ["a", "b", "c"].map { FakeServer.request("echo", $0) }.joined())
        server.turn(times: 2)
        #expect(server.fake.takeRequests() == [.send(id, TestHandler.echo("a") + TestHandler.echo("b") + TestHandler.echo("c"))])
    }

    @Test func aRequestSplitAcrossReceivesIsAnsweredOnceItIsWhole() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        let line = FakeServer.request("echo", "split")
        server.fake.receive(id, String(line.prefix(10)))
        server.turn(times: 2)
        #expect(server.fake.sendInFlight(id) == nil)
        server.fake.receive(id, String(line.dropFirst(10)) + FakeServer.request("echo", "next"))
        server.turn(times: 2)
        #expect(server.fake.sendInFlight(id) == TestHandler.echo("split") + TestHandler.echo("next"))
    }

    @Test func aReplyAfterAnOffloadedOneWaitsForItAndTheyLeaveInOrder() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        server.fake.receive(id, FakeServer.request("echo", "a") + FakeServer.request("later", "b") + FakeServer.request("echo", "c"))
        server.turn(times: 2)
        #expect(server.fake.sendInFlight(id) == TestHandler.echo("a"), "c waits for b")
        server.fake.completeSend(id)
        server.turn()
        #expect(server.fake.sendInFlight(id) == nil, "c still waits for b")
        // b's reply comes back from the Dispatch pool through the inbox.
        server.handler.finishLater()
        #expect(server.turn(until: { server.fake.sendInFlight(id) != nil }))
        #expect(server.fake.sendInFlight(id) == TestHandler.later("b") + TestHandler.echo("c"))
    }
}
