import Synchronization

/// A snapshot of the engine's counters.
public struct EngineStatistics: Sendable, Equatable {
    /// Connections open now (admitted or being refused).
    public var connections = 0
    /// Connections the engine may hold at once.
    public var connectionCapacity = 0
    public var subscribers = 0
    public var connectionsAccepted = 0
    public var connectionsRefused = 0
    public var framesReceived = 0
    public var malformedFrames = 0
    public var oversizedFrames = 0
    public var frameTimeouts = 0
    public var broadcastPublished = 0
    public var broadcastRetained = 0
    public var broadcastRetainedBytes = 0
    public var lastSequence: UInt64 = 0
    public var lagEvents = 0
    public var lagDisconnects = 0
    public var slowDisconnects = 0
    public var completionQueueOverflows = 0
    public var receiveBufferExhaustions = 0
    public var acceptErrors = 0
    public var offloadsInFlight = 0
    /// Connections whose requests are not read now because their replies
    /// or offloaded requests are at their limits.
    public var readingPaused = 0
}

/// The live counters behind `EngineStatistics`. Written by the loop thread
/// (relaxed stores), read from anywhere.
final class EngineCounters: Sendable {
    let connections = Atomic<Int>(0)
    let connectionCapacity = Atomic<Int>(0)
    let subscribers = Atomic<Int>(0)
    let connectionsAccepted = Atomic<Int>(0)
    let connectionsRefused = Atomic<Int>(0)
    let framesReceived = Atomic<Int>(0)
    let malformedFrames = Atomic<Int>(0)
    let oversizedFrames = Atomic<Int>(0)
    let frameTimeouts = Atomic<Int>(0)
    let broadcastPublished = Atomic<Int>(0)
    let broadcastRetained = Atomic<Int>(0)
    let broadcastRetainedBytes = Atomic<Int>(0)
    let lastSequence = Atomic<UInt64>(0)
    let lagEvents = Atomic<Int>(0)
    let lagDisconnects = Atomic<Int>(0)
    let slowDisconnects = Atomic<Int>(0)
    let completionQueueOverflows = Atomic<Int>(0)
    let receiveBufferExhaustions = Atomic<Int>(0)
    let acceptErrors = Atomic<Int>(0)
    let offloadsInFlight = Atomic<Int>(0)
    let readingPaused = Atomic<Int>(0)

    var snapshot: EngineStatistics {
        EngineStatistics(
            connections: connections.load(ordering: .relaxed),
            connectionCapacity: connectionCapacity.load(ordering: .relaxed),
            subscribers: subscribers.load(ordering: .relaxed),
            connectionsAccepted: connectionsAccepted.load(ordering: .relaxed),
            connectionsRefused: connectionsRefused.load(ordering: .relaxed),
            framesReceived: framesReceived.load(ordering: .relaxed),
            malformedFrames: malformedFrames.load(ordering: .relaxed),
            oversizedFrames: oversizedFrames.load(ordering: .relaxed),
            frameTimeouts: frameTimeouts.load(ordering: .relaxed),
            broadcastPublished: broadcastPublished.load(ordering: .relaxed),
            broadcastRetained: broadcastRetained.load(ordering: .relaxed),
            broadcastRetainedBytes: broadcastRetainedBytes.load(ordering: .relaxed),
            lastSequence: lastSequence.load(ordering: .relaxed),
            lagEvents: lagEvents.load(ordering: .relaxed),
            lagDisconnects: lagDisconnects.load(ordering: .relaxed),
            slowDisconnects: slowDisconnects.load(ordering: .relaxed),
            completionQueueOverflows: completionQueueOverflows.load(ordering: .relaxed),
            receiveBufferExhaustions: receiveBufferExhaustions.load(ordering: .relaxed),
            acceptErrors: acceptErrors.load(ordering: .relaxed),
            offloadsInFlight: offloadsInFlight.load(ordering: .relaxed),
            readingPaused: readingPaused.load(ordering: .relaxed))
    }
}
