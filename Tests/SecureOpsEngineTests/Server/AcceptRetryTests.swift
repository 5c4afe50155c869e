import Glibc
import Testing
import SecureOpsSystem
@testable import SecureOpsEngine

/// Out of descriptors (`EMFILE`), accepting stops for `acceptRetryDelay`:
/// the clients wait in the backlog instead of the loop spinning on an
/// accept that fails at once.
@Suite("Accepting at the descriptor limit", .timeLimit(.minutes(1)))
struct AcceptRetryTests {
    @Test func aStormOfEMFILECancelsTheAcceptOnceAndRestsItForTheRetryDelay() throws {
        let server = try FakeServer()
        // The loop times events by its clock as read at the end of its last
        // turn: read it just before the failures arrive.
        server.turn()
        _ = server.fake.takeRequests()
        let failedAt = server.loop.now
        server.fake.failAccept(errno: EMFILE, times: 50)
        server.turn()
        #expect(server.statistics.acceptErrors == 50)
        #expect(server.fake.takeRequests() == [.cancelAccept(listener: 0)])
        server.fake.completeCancellations()
        server.turn()
        #expect(server.fake.accept(of: 0) == nil)

        // The loop turns on, waiting 10 ms at a time (real time: the loop's
        // clock is the monotonic clock), and re-arms the accept exactly
        // once, not before the delay.
        var turns = 0
        var arms = 0
        func countArms() { arms += server.fake.takeRequests().filter { $0 == .armAccept(listener: 0) }.count }
        let rearmed = server.turn(until: {
            turns += 1
            countArms()
            return arms > 0
        })
        let rested = SystemClock.monotonicNanoseconds() - failedAt
        server.turn(times: 10)
        countArms()
        #expect(rearmed)
        #expect(arms == 1)
        #expect(rested >= Timers.acceptRetryDelay)
        #expect(turns > 5, "it rested while the loop turned")
        #expect(server.fake.accept(of: 0) == .armed)
    }

    @Test func aFailureThatEndsTheAcceptIsNotReArmedAtOnceEither() throws {
        let server = try FakeServer()
        server.turn()
        _ = server.fake.takeRequests()
        let failedAt = server.loop.now
        // io_uring's multishot accept ends with its error.
        server.fake.failAccept(errno: EMFILE, endingTheAccept: true)
        server.turn(times: 20)
        let rearmed = server.fake.takeRequests().contains(.armAccept(listener: 0))
        #expect(!rearmed || SystemClock.monotonicNanoseconds() - failedAt >= Timers.acceptRetryDelay)
        #expect(rearmed || server.loop.timers.isRetryingAccept(0))
    }

    @Test func otherAcceptErrorsLeaveTheAcceptArmed() throws {
        let server = try FakeServer()
        _ = server.fake.takeRequests()
        server.fake.failAccept(errno: ECONNABORTED)
        server.turn()
        #expect(server.fake.takeRequests() == [])
        #expect(server.fake.accept(of: 0) == .armed)
        #expect(!server.loop.timers.isRetryingAccept(0))
        try server.connect()
        #expect(server.statistics.connectionsAccepted == 1)
    }
}
