import Glibc
import Testing
@testable import SecureOpsEngine

/// A receive that ends because every shared buffer was taken (`ENOBUFS`) is
/// counted and re-armed a batch per turn, in the order they starved:
/// re-arming them all while buffers are scarce would only starve them all
/// again.
@Suite("Receive buffer starvation", .timeLimit(.minutes(1)))
struct ReceiveStarvationTests {
    @Test func starvedReceivesAreCountedAndReArmedInBatchesInTheOrderTheyStarved() throws {
        let server = try FakeServer()
        server.fake.rearmBatchAfterStarvation = 2
        var ids: [ConnectionID] = []
        for _ in 0..<5 { ids.append(try server.connect().id) }
        _ = server.fake.takeRequests()
        let order = [3, 0, 4, 1, 2].map { ids[$0] }
        for id in order { server.fake.endReceive(id, .starved) }
        server.turn()
        #expect(server.statistics.receiveBufferExhaustions == 5)
        #expect(server.fake.takeRequests() == [], "nothing is re-armed from inside the completions")

        var batches: [[FakeBackend.Request]] = []
        for _ in 0..<4 {
            server.turn()
            batches.append(server.fake.takeRequests())
        }
        #expect(batches == [
            [.armReceive(order[0]), .armReceive(order[1])],
            [.armReceive(order[2]), .armReceive(order[3])],
            [.armReceive(order[4])],
            [],
        ])
    }

    @Test func aStarvedConnectionThatClosesBeforeItsTurnIsNotReArmed() throws {
        let server = try FakeServer()
        server.fake.rearmBatchAfterStarvation = 1
        let first = try server.connect().id
        let second = try server.connect().id
        let secondFD = try #require(server.connection(second)).fd
        server.fake.receive(second, FakeServer.request("echo", "x"))
        server.turn(times: 2)  // the reply to the second is in flight
        server.fake.endReceive(first, .starved)
        server.fake.endReceive(second, .starved)
        server.turn()
        _ = server.fake.takeRequests()
        // The second's peer is gone: its send fails in the turn that
        // re-arms the first.
        server.fake.failSend(second, errno: EPIPE)
        server.turn()
        #expect(server.fake.takeRequests() == [.armReceive(first), .release(fd: secondFD)])
        server.turn(times: 2)
        #expect(server.fake.takeRequests() == [])
    }

    @Test func aReArmedReceiveServesAgain() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        server.fake.endReceive(id, .starved)
        server.turn(times: 2)
        #expect(server.fake.receive(of: id) == .armed)
        server.fake.receive(id, FakeServer.request("echo", "back"))
        server.turn(times: 2)
        #expect(server.fake.sendInFlight(id) == TestHandler.echo("back"))
    }
}
