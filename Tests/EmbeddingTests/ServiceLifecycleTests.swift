import Foundation
import SecureOpsClient
import SecureOpsEngine
import SecureOpsEngineService
import ServiceLifecycle
import Testing

/// The engine as a swift-service-lifecycle `Service` under a `ServiceGroup`.
/// (Signals are not sent here: they would reach every test in this process;
/// `ExampleServerTests` sends SIGTERM to the example server, which runs its
/// engine in a ServiceGroup.)
@Suite("Engine as a Service", .timeLimit(.minutes(2)))
struct ServiceLifecycleTests {
    typealias Counters = CounterHandler<FastCounterRequest>

    @Test func aGracefulShutdownOfTheGroupAnswersPendingRequestsThenStopsTheEngine() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "svc"), path: scratch.socket())
        let group = ServiceGroup(services: [engine], logger: testLogger("service-group"))
        let running = Task { try await group.run() }

        let client = try SecureOpsConnection.connect(to: scratch.socket())
        try client.sendRaw(Array("{\"op\":\"slow\"}\n{\"op\":\"get\",\"name\":\"x\"}\n".utf8))
        #expect(await eventually { engine.statistics.framesReceived == 2 })
        await group.triggerGracefulShutdown()
        try await running.value

        #expect(try object(client.readLine(timeout: 5))["slow"] as? Bool == true)
        #expect(try object(client.readLine(timeout: 5))["value"] as? Int == 0)
        #expect(try client.readLine(timeout: 5) == nil)
        #expect(!FileManager.default.fileExists(atPath: scratch.socket()))
    }

    @Test func cancellingTheGroupStopsTheEngine() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "svc"), path: scratch.socket())
        let group = ServiceGroup(services: [engine], logger: testLogger("service-group"))
        let running = Task { try await group.run() }
        #expect(await eventually { (try? SecureOpsConnection.connect(to: scratch.socket())) != nil })
        running.cancel()
        _ = try? await running.value
        await engine.waitForStop()
        #expect(!FileManager.default.fileExists(atPath: scratch.socket()))
    }

    @Test func anEngineStoppedByOtherMeansEndsTheGroup() async throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(Counters(tag: "svc"), path: scratch.socket())
        let group = ServiceGroup(services: [engine], logger: testLogger("service-group"))
        let running = Task { try await group.run() }
        engine.requestShutdown()
        // A service that returns ends the group (the default behaviour).
        _ = try? await running.value
        #expect(engine.hasStarted)
    }

    @Test func runningAnEngineThatWasNotStartedThrowsAnActionableError() async throws {
        let scratch = try ScratchDirectory()
        let engine = try Engine<Counters>(configuration: EngineConfiguration(socketPath: scratch.socket()))
        let error = await #expect(throws: EngineError.self) { try await engine.run() }
        #expect(error?.description.contains("call start(handler:) before running it in a ServiceGroup") == true)
    }
}
