import Testing
@testable import SecureOpsEngine

/// A stream socket takes what fits: the rest of a send is issued again from
/// where the kernel stopped, with one send in flight per connection
/// (docs/DESIGN.md, invariant 6). The fake records a second send in flight
/// as a violation of the seam, which fails the test.
@Suite("Partial sends", .timeLimit(.minutes(1)))
struct PartialSendTests {
    /// Completes the connection's sends `piece` bytes at a time until none
    /// is in flight; returns how many sends it took. `between` runs after
    /// each completion has been handled.
    @discardableResult
    func drain(_ server: FakeServer, _ id: ConnectionID, piece: Int, between: (Int) -> Void = { _ in }) -> Int {
        var sends = 0
        while let asked = server.fake.sendInFlight(id), sends < 1000 {
            sends += 1
            server.fake.completeSend(id, bytes: min(piece, asked.utf8.count))
            server.turn()
            between(sends)
        }
        return sends
    }

    @Test func aReplySentInSevenBytePiecesArrivesWholeAndEachSendResumesWhereTheKernelStopped() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        let text = String(repeating: "abcdefghij", count: 10)
        let reply = TestHandler.echo(text)
        server.fake.receive(id, FakeServer.request("echo", text))
        server.turn()  // handles the request
        server.turn()  // issues the reply's send
        var sends = 0
        while let asked = server.fake.sendInFlight(id), sends < 1000 {
            sends += 1
            server.fake.completeSend(id, bytes: min(7, asked.utf8.count))
            server.turn()
            if let next = server.fake.sendInFlight(id) {
                #expect(next == String(asked.dropFirst(7)), "the send goes on from the first byte not sent")
            }
        }
        #expect(server.sent(to: id) == reply)
        #expect(sends == (reply.utf8.count + 6) / 7)
        #expect(server.fake.violations.isEmpty)
    }

    @Test func broadcastFramesSentInPiecesArriveWholeAndInOrderAlsoThosePublishedMidSend() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        server.fake.receive(id, FakeServer.request("watch"))
        server.turn(times: 2)
        var expected = TestHandler.watching(1)
        #expect(server.fake.sendInFlight(id) == expected)
        server.fake.completeSend(id)
        server.turn()
        for n in 1...3 { expected += server.publish("first-\(n)") }
        server.turn()  // takes the frames from the inbox and sends them
        #expect(server.fake.sendInFlight(id) != nil)
        drain(server, id, piece: 5) { sends in
            // Published while a send is in flight: they follow it.
            if sends == 3 { for n in 1...2 { expected += server.publish("second-\(n)") } }
        }
        #expect(server.sent(to: id) == expected)
        #expect(server.fake.violations.isEmpty)
    }

    @Test func aSubscriberWithASendInFlightGetsNoSecondOneWhenFramesArrive() throws {
        let server = try FakeServer()
        let (id, _) = try server.connect()
        server.fake.receive(id, FakeServer.request("watch"))
        server.turn(times: 2)
        server.fake.completeSend(id, bytes: 3)
        server.turn()
        let rest = try #require(server.fake.sendInFlight(id))
        _ = server.fake.takeRequests()
        let frame = server.publish("late")
        server.turn(times: 3)
        #expect(server.fake.takeRequests() == [], "the new frame waits for the send in flight")
        server.fake.completeSend(id)
        server.turn()
        #expect(server.fake.takeRequests() == [.send(id, frame)])
        #expect(rest == String(TestHandler.watching(1).dropFirst(3)))
    }
}
