import Glibc
import Testing
@_spi(Benchmarks) @testable import SecureOpsEngine

/// The fake kernel catches a server that breaks the seam's rules: these
/// play such a server against it directly.
@Suite("Fake backend", .timeLimit(.minutes(1)))
struct FakeBackendTests {
    let a = ConnectionID(slot: 0, generation: 1)
    let b = ConnectionID(slot: 0, generation: 2)

    func fake() -> FakeBackend {
        let fake = FakeBackend()
        fake.reportsViolations = false
        return fake
    }

    func operation(_ text: String) -> SendOperation {
        let buffer = OutputBuffer(capacity: 64)
        buffer.append(Array(text.utf8))
        let operation = SendOperation()
        operation.add(buffer)
        return operation
    }

    @Test func aSecondSendWhileOneIsInFlightIsAViolation() {
        let fake = fake()
        fake.send(operation("one"), for: a, fd: 5)
        fake.send(operation("two"), for: a, fd: 5)
        #expect(fake.violations.count == 1)
        #expect(fake.sendInFlight(a) == "one")
    }

    @Test func aSendOfZeroBytesIsAViolation() {
        let fake = fake()
        fake.send(SendOperation(), for: a, fd: 5)
        #expect(fake.violations.count == 1)
    }

    @Test func armingAReceiveThatIsStillArmedIsAViolation() {
        let fake = fake()
        fake.armReceive(a, fd: 5)
        fake.cancelReceive(a, fd: 5)
        fake.armReceive(a, fd: 5)
        #expect(fake.violations.count == 1, "cancelled is not ended: its completion is still to come")
    }

    @Test func releasingADescriptorWithOperationsOnItIsAViolation() {
        let fake = fake()
        fake.armReceive(a, fd: 5)
        fake.cancelAll(a, fd: 5)
        fake.release(fd: 5)
        #expect(fake.violations.count == 1)
    }

    @Test func anOperationAfterReleaseOrOnADescriptorAnotherConnectionHoldsIsAViolation() {
        let fake = fake()
        fake.armReceive(a, fd: 5)
        fake.armReceive(b, fd: 5)
        #expect(fake.violations.count == 1)
        let events = RecordingEvents()
        fake.cancelAll(a, fd: 5)
        fake.completeCancellations()
        fake.wait(timeoutNanoseconds: 0, events: events)
        fake.release(fd: 5)
        fake.armHangup(a, fd: 5)
        #expect(fake.violations.count == 2)
        fake.armReceive(b, fd: 5)
        #expect(fake.violations.count == 2, "a new connection may use the descriptor once it is released")
    }

    @Test func memoryASendReadsThatChangesBeforeItCompletesIsAViolation() {
        let fake = fake()
        let buffer = OutputBuffer(capacity: 64)
        buffer.append(Array("original".utf8))
        let operation = SendOperation()
        operation.add(buffer)
        fake.send(operation, for: a, fd: 5)
        buffer.reset()
        buffer.append(Array("REWRITE!".utf8))
        fake.completeSend(a)
        fake.wait(timeoutNanoseconds: 0, events: RecordingEvents())
        #expect(fake.violations.count == 1)
    }

    @Test func eventsAreDeliveredByTheNextWaitInOrderNeverSooner() {
        let fake = fake()
        let events = RecordingEvents()
        fake.armReceive(a, fd: 5)
        fake.send(operation("hello"), for: a, fd: 5)
        fake.receive(a, "x")
        fake.completeSend(a, bytes: 2)
        fake.endReceive(a, .interrupted)
        #expect(events.log == [])
        fake.wait(timeoutNanoseconds: 0, events: events)
        #expect(events.log == ["received 0.1 x", "sent 0.1 2", "receiveEnded 0.1 interrupted"])
        #expect(fake.sent(to: a) == "he")
        #expect(fake.violations.isEmpty)
    }

    @Test func cancellationsCompleteOnlyWhenTheTestSaysSo() {
        let fake = fake()
        let events = RecordingEvents()
        fake.armReceive(a, fd: 5)
        fake.armHangup(a, fd: 5)
        fake.send(operation("hello"), for: a, fd: 5)
        fake.cancelAll(a, fd: 5)
        fake.wait(timeoutNanoseconds: 0, events: events)
        #expect(events.log == [])
        fake.completeCancellations()
        fake.wait(timeoutNanoseconds: 0, events: events)
        #expect(events.log == ["receiveEnded 0.1 cancelled", "sent 0.1 \(-ECANCELED)", "hangup 0.1 \(-ECANCELED)"])
        fake.release(fd: 5)
        #expect(fake.violations.isEmpty)
    }
}

/// The server's side of the seam, written down.
final class RecordingEvents: IOEvents {
    private(set) var log: [String] = []

    func waitReturned() {}
    func accepted(_ fd: Int32, listener: Int) { log.append("accepted \(fd)") }
    func acceptFailed(listener: Int, errno: Int32) { log.append("acceptFailed \(errno)") }
    func acceptEnded(listener: Int) { log.append("acceptEnded") }
    func received(_ connection: ConnectionID, _ bytes: UnsafeRawBufferPointer) {
        log.append("received \(connection) \(String(decoding: bytes, as: UTF8.self))")
    }
    func receiveEnded(_ connection: ConnectionID, _ end: ReceiveEnd) { log.append("receiveEnded \(connection) \(end)") }
    func sendCompleted(_ connection: ConnectionID, result: Int32) { log.append("sent \(connection) \(result)") }
    func hangupCompleted(_ connection: ConnectionID, result: Int32) { log.append("hangup \(connection) \(result)") }
    func fileWriteCompleted(result: Int32) { log.append("fileWrite \(result)") }
    func fileSyncCompleted(result: Int32) { log.append("fileSync \(result)") }
}
