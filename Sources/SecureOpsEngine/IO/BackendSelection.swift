import Logging

/// Picks the backend an engine runs on (`EngineConfiguration.ioBackend`).
enum BackendSelection {
    /// Makes the backend on the calling thread (the loop thread). With
    /// `auto`, io_uring when a ring with every operation the engine uses can
    /// be set up here, otherwise epoll, with one warning that says why
    /// io_uring is not available and how to enable it.
    static func make(
        _ choice: IOBackendChoice, configuration: EngineConfiguration, wakeFD: Int32, logger: Logger
    ) throws(EngineError) -> (IOBackend, ServingBackend) {
        switch choice {
        case .ioUring:
            let ring = try IOURingBackend(configuration: configuration, wakeFD: wakeFD, logger: logger)
            return (ring, report(ring, fallbackReason: nil))
        case .epoll:
            let epoll = try EpollBackend(wakeFD: wakeFD, logger: logger)
            return (epoll, report(epoll, fallbackReason: nil))
        case .auto:
            do {
                let ring = try IOURingBackend(configuration: configuration, wakeFD: wakeFD, logger: logger)
                return (ring, report(ring, fallbackReason: nil))
            } catch {
                guard case .ioUringUnavailable(let why) = error else { throw error }
                logger.warning("io_uring is not available, serving on epoll instead: \(why)")
                let epoll = try EpollBackend(wakeFD: wakeFD, logger: logger)
                return (epoll, report(epoll, fallbackReason: why))
            }
        }
    }

    private static func report(_ backend: IOBackend, fallbackReason: String?) -> ServingBackend {
        ServingBackend(
            kind: backend.kind, description: backend.description,
            ringFlags: (backend as? IOURingBackend)?.setupFlags, ioUringUnavailable: fallbackReason)
    }
}
