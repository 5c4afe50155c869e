import Glibc
import Testing
@testable import SecureOpsEngine

/// A connection whose replies pile up past `maxPendingOutputBytes` is not
/// read: its receive is cancelled, what was already received is held, and
/// once its replies drain below half the held requests are handled in
/// order and reading resumes (docs/DESIGN.md, invariant 5).
@Suite("Back-pressure", .timeLimit(.minutes(1)))
struct BackpressureTests {
    /// Replies of 23 bytes: two are over the 40-byte limit.
    func requests(_ names: [String]) -> String {
        names.map { FakeServer.request("echo", "request-\($0)") }.joined()
    }

    func replies(_ names: [String]) -> String {
        names.map { TestHandler.echo("request-\($0)") }.joined()
    }

    /// Completes sends until none is in flight.
    func drainSends(_ server: FakeServer, _ id: ConnectionID) {
        var rounds = 0
        while server.fake.sendInFlight(id) != nil && rounds < 100 {
            rounds += 1
            server.fake.completeSend(id)
            server.turn(times: 2)
        }
    }

    @Test func repliesOverTheLimitStopReadingAndHeldRequestsAreAnsweredInOrderAfterwards() throws {
        let server = try FakeServer { $0.limits.maxPendingOutputBytes = 40 }
        let (id, _) = try server.connect()
        _ = server.fake.takeRequests()
        server.fake.receive(id, requests(["1", "2", "3", "4"]))
        server.turn()
        #expect(server.handler.handled.count == 2, "the second reply went over the limit")
        #expect(server.fake.takeRequests() == [.cancelReceive(id)])
        #expect(server.statistics.readingPaused == 1)
        // More arrives before the cancellation takes hold: held too.
        server.fake.receive(id, requests(["5"]))
        server.fake.completeCancellations()
        server.turn()
        #expect(server.handler.handled.count == 2)
        #expect(server.fake.receive(of: id) == nil, "not re-armed while paused")

        drainSends(server, id)
        #expect(server.sent(to: id) == replies(["1", "2", "3", "4", "5"]))
        #expect(server.handler.handled == ["1", "2", "3", "4", "5"].map { "echo request-\($0)" })
        #expect(server.fake.receive(of: id) == .armed, "reading resumed")
        #expect(server.statistics.readingPaused == 0)
    }

    @Test func aPeerThatHalfClosesWhilePausedGetsEveryReplyThenTheClose() throws {
        let server = try FakeServer { $0.limits.maxPendingOutputBytes = 40 }
        let (id, client) = try server.connect()
        let fd = try #require(server.connection(id)).fd
        _ = server.fake.takeRequests()
        server.fake.receive(id, requests(["1", "2", "3"]))
        server.turn()
        // The peer shut its side before the cancellation landed.
        shutdown(client, Int32(SHUT_WR))
        server.fake.endReceive(id, .endOfStream)
        server.turn()
        drainSends(server, id)
        #expect(server.sent(to: id) == replies(["1", "2", "3"]))
        let requests = server.fake.takeRequests()
        #expect(requests.last == .release(fd: fd))
        #expect(!requests.contains(.armReceive(id)), "nothing more to read")
        #expect(server.handler.closed[id] == .peerClosed)
    }
}
