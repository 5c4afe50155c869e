/// A server's protocol logic, plugged into the engine.
///
/// Every method runs on the engine's loop thread, one call at a time, so a
/// handler may keep plain mutable state. It must not block: work that may
/// (disk, crypto, child processes) returns `.offload` and runs on the
/// engine's Dispatch pool; its reply still leaves in request order.
///
/// The handler instance never leaves the loop thread, but its type may be
/// named from any thread (`Engine<Handler>` is `Sendable`), hence
/// `SendableMetatype`, which every ordinary class satisfies.
public protocol RequestHandler: AnyObject, SendableMetatype {
    /// The request frames this server understands, decoded from one JSON
    /// line each by the engine's `FastJSONDecoder`.
    associatedtype Request: Decodable

    /// Decides, from the kernel's credentials, whether a new connection may
    /// talk at all. Called once per connection, before its first request.
    func admit(_ connection: ConnectionInfo) -> Admission

    /// Answers one request. Write the response into `context.response`
    /// and return `.respond`, or return `.offload` to run work off the loop.
    /// A thrown error becomes an error frame; the connection stays open.
    func handle(_ request: Request, context: RequestContext) throws -> Reply

    /// Decodes one frame as `Request` and answers it. You do not write this:
    /// the default decodes with `decoder` and calls `handle`. It is a
    /// requirement so that it is compiled with your handler's concrete
    /// types (a `Request` that adopts `FastJSONDecodable` then decodes with
    /// no generic dispatch at all). Override it only to look at raw frames
    /// before they are decoded.
    func respond(toFrame frame: UnsafeRawBufferPointer, decoder: FastJSONDecoder, context: RequestContext) -> FrameOutcome

    /// Writes an error frame (with its trailing newline). The engine uses it
    /// for undecodable frames, oversized frames, refused peers and thrown
    /// errors. The default writes `{"type":"err","message":...}`.
    func writeError(_ message: String, into writer: inout JSONWriter)

    /// Writes the notice a lagged subscriber gets before it resumes at
    /// `resumeAt`. The default is WIRE.md's `lagged` err frame.
    func writeLagNotice(skipped: UInt64, resumeAt: UInt64, into writer: inout JSONWriter)

    /// Called when a connection admitted or refused by `admit` is gone.
    func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason)

    /// Called for every open connection by `Engine.reviewConnections()`,
    /// after the rules behind `admit` changed (a policy reload, say): keep
    /// it, end its subscription (with an error frame saying why; the
    /// connection stays open), or close it (one error frame, then closed).
    /// The default asks `admit` again and closes what it refuses.
    func review(_ connection: ConnectionInfo, isSubscribed: Bool) -> Review
}

/// What `RequestHandler.review` decided for an open connection.
public enum Review: Sendable, Equatable {
    case keep
    /// Stop sending it broadcast frames; send this error frame instead.
    case endSubscription(String)
    /// Send this error frame, then close.
    case close(String)
}

extension RequestHandler {
    @inlinable
    public func respond(toFrame frame: UnsafeRawBufferPointer, decoder: FastJSONDecoder, context: RequestContext) -> FrameOutcome {
        let request: Request
        do {
            request = try decoder.decode(Request.self, from: frame)
        } catch {
            return .undecodable(describe(error))
        }
        do {
            return .reply(try handle(request, context: context))
        } catch {
            return .failed(describe(error))
        }
    }
}

extension RequestHandler where Request: FastJSONDecodable {
    /// The same steps as the general version above, but here
    /// `decoder.decode` resolves, at compile time, to the overload for
    /// `FastJSONDecodable` types: exact-frame recognition and the concrete
    /// container, with no dynamic casts per frame. (A shared helper would
    /// have to take `Request` generically and lose that.)
    @inlinable
    public func respond(toFrame frame: UnsafeRawBufferPointer, decoder: FastJSONDecoder, context: RequestContext) -> FrameOutcome {
        let request: Request
        do {
            request = try decoder.decode(Request.self, from: frame)
        } catch {
            return .undecodable(describe(error))
        }
        do {
            return .reply(try handle(request, context: context))
        } catch {
            return .failed(describe(error))
        }
    }
}

/// What became of one frame.
public enum FrameOutcome: Sendable {
    /// It decoded and the handler answered.
    case reply(Reply)
    /// It did not decode; the message says why (it goes into an error frame).
    case undecodable(String)
    /// The handler threw; the message goes into an error frame.
    case failed(String)
}

extension RequestHandler {
    public func writeError(_ message: String, into writer: inout JSONWriter) {
        ErrFrame.write(message: message, into: &writer)
    }

    public func writeLagNotice(skipped: UInt64, resumeAt: UInt64, into writer: inout JSONWriter) {
        ErrFrame.write(message: "lagged: skipped \(skipped) alerts", skipped: skipped, resumeAt: resumeAt, into: &writer)
    }

    public func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason) {}

    public func review(_ connection: ConnectionInfo, isSubscribed: Bool) -> Review {
        switch admit(connection) {
        case .admit: .keep
        case .refuse(let message): .close(message)
        }
    }
}

/// Who a connection belongs to, and how it reached the engine.
public struct ConnectionInfo: Sendable, Hashable {
    public let id: ConnectionID
    /// Who is on the other end, as far as anything vouches for it.
    public let peer: Peer
    /// The listener it came through (as bound).
    public let listener: ListenAddress

    public init(id: ConnectionID, peer: Peer, listener: ListenAddress) {
        self.id = id
        self.peer = peer
        self.listener = listener
    }

    public enum Peer: Sendable, Hashable, CustomStringConvertible {
        /// A peer on this host, over a Unix socket: its credentials from
        /// `SO_PEERCRED` and supplementary groups from `SO_PEERGROUPS`, as
        /// the kernel recorded them at connect time.
        case local(PeerCred, groups: [UInt32])
        /// A peer over TCP: only its address is known. Nothing vouches for
        /// who it is; authenticate it in the protocol, or admit by address
        /// only on a network you trust.
        case remote(TCPAddress)

        public var description: String {
            switch self {
            case .local(let credentials, _): "\(credentials)"
            case .remote(let address): "tcp \(address)"
            }
        }
    }

    /// The kernel's word on the peer; nil for TCP, which has none.
    public var credentials: PeerCred? {
        if case .local(let credentials, _) = peer { return credentials }
        return nil
    }

    /// The peer's supplementary groups (`SO_PEERGROUPS`); empty for TCP.
    public var groups: [UInt32] {
        if case .local(_, let groups) = peer { return groups }
        return []
    }

    /// The peer's address; nil for a Unix-socket peer.
    public var remoteAddress: TCPAddress? {
        if case .remote(let address) = peer { return address }
        return nil
    }
}

public enum Admission: Sendable, Equatable {
    case admit
    /// Send one error frame with this message, then close.
    case refuse(String)
}

/// What a handler wants done with a request.
public enum Reply: Sendable {
    /// Send what the handler wrote into `context.response`.
    case respond
    /// Send it, read nothing more from this connection, and close once it
    /// has been flushed.
    case respondAndClose
    /// Run `work` on the Dispatch pool; its reply is sent in request order.
    /// A thrown error becomes an error frame. One connection's offloaded
    /// requests run one at a time, in order: a client that pipelines many
    /// holds one pool thread, not all of them.
    case offload(@Sendable () throws -> OffloadedReply)
    /// Send the reply `write` writes once the journal has the frame with
    /// `sequence` (from `RequestContext.publish`) on disk, or could not put
    /// it there; at once, with `.noJournal`, when the engine keeps no
    /// journal. Later replies on the connection wait behind it. `write`
    /// runs on the loop thread; a closure that captures nothing costs no
    /// allocation.
    case respondWhenPersisted(sequence: UInt64, write: PersistedReplyWriter)
}

/// Writes a reply once the journal has dealt with its frame.
public typealias PersistedReplyWriter = @Sendable (_ sequence: UInt64, _ persistence: Persistence, _ writer: inout JSONWriter) -> Void

/// Whether a published frame reached the journal.
public enum Persistence: Sendable, Equatable {
    /// Written, and synced as the journal's policy asks.
    case persisted
    /// Not written (a full or failing disk); the text says why. The frame
    /// still went to every subscriber.
    case notPersisted(String)
    /// The engine keeps no journal.
    case noJournal
}

/// The encoded reply of an offloaded handler.
public struct OffloadedReply: Sendable {
    public var bytes: [UInt8]
    public var closeAfterwards: Bool

    /// `bytes` must be whole frames, each ending in a newline.
    public init(bytes: [UInt8], closeAfterwards: Bool = false) {
        self.bytes = bytes
        self.closeAfterwards = closeAfterwards
    }

    /// Builds the reply with a fresh writer.
    public static func writing(closeAfterwards: Bool = false, _ body: (inout JSONWriter) throws -> Void) rethrows -> OffloadedReply {
        var writer = JSONWriter(capacity: 512)
        try body(&writer)
        return OffloadedReply(bytes: writer.bytes, closeAfterwards: closeAfterwards)
    }
}

/// Why a connection closed, for logs and audit records.
public enum CloseReason: Sendable, Equatable, CustomStringConvertible {
    case peerClosed
    case refused
    case frameTooLarge
    case frameTimeout
    case closedByHandler
    case lagged
    case stuckSend
    case sendFailed(Int32)
    case receiveFailed(Int32)
    case shutdown

    public var description: String {
        switch self {
        case .peerClosed: "peer closed the connection"
        case .refused: "refused at admission"
        case .frameTooLarge: "frame over the size limit"
        case .frameTimeout: "frame not completed within the deadline (slowloris defence)"
        case .closedByHandler: "closed after the reply"
        case .lagged: "lagged behind the broadcast ring (onLag = disconnect)"
        case .stuckSend: "send made no progress within the deadline (slow consumer)"
        case .sendFailed(let code): "send failed (errno \(code))"
        case .receiveFailed(let code): "receive failed (errno \(code))"
        case .shutdown: "engine shutting down"
        }
    }
}
