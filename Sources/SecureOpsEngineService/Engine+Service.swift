import SecureOpsEngine
import ServiceLifecycle

/// An engine is a swift-service-lifecycle `Service`: add it to a
/// `ServiceGroup` and the group's signal handling and orderly shutdown
/// apply to it.
///
/// ```swift
/// let engine = try Engine<Presence>(configuration: .init(socketPath: path))
/// try engine.start(handler: Presence())          // fails here, with the reason
/// let group = ServiceGroup(configuration: .init(
///     services: [.init(service: engine)],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger))
/// try await group.run()
/// ```
///
/// Start the engine before running the group: `start(handler:)` takes the
/// handler and throws start-up errors (socket path in use, io_uring
/// unavailable) synchronously, where `main` can print them and exit, before
/// any other service has started.
extension Engine: Service {
    /// Serves until the group shuts down gracefully (or is cancelled), then
    /// stops the engine the graceful way: it stops accepting, answers every
    /// request already received, flushes (within
    /// `EngineConfiguration.shutdownGracePeriod`) and returns once the loop
    /// thread has ended. Returns early if the engine is shut down by other
    /// means (`requestShutdown()`); the group then ends too.
    public func run() async throws {
        guard hasStarted else {
            throw EngineError.invalidState(
                "the engine for \(configuration.listeners.map(\.description).joined(separator: ", ")) was not started: call start(handler:) before running it in a ServiceGroup")
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            await self.waitForStop()
        } onCancelOrGracefulShutdown: {
            self.requestShutdown()
        }
    }
}
