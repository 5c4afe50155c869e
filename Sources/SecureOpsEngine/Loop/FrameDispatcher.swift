/// The seam between the non-generic loop and a server's typed handler:
/// the loop hands over frames, the dispatcher decodes and answers them.
protocol FrameDispatcher: AnyObject {
    /// Decodes and answers one frame of `connection`. Returns false when the
    /// connection must read no further frames (it is closing).
    func dispatch(frame: UnsafeRawBufferPointer, connection: Connection, loop: EventLoop) -> Bool
    func admit(_ connection: ConnectionInfo) -> Admission
    func review(_ connection: ConnectionInfo, isSubscribed: Bool) -> Review
    func writeError(_ message: String, into writer: inout JSONWriter)
    func writeLagNotice(skipped: UInt64, resumeAt: UInt64, into writer: inout JSONWriter)
    func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason)
}

/// Connects a `RequestHandler` to the loop: one decoder and one context,
/// reused for every frame, so answering a request allocates nothing the
/// handler does not ask for.
final class HandlerDispatcher<Handler: RequestHandler>: FrameDispatcher {
    let handler: Handler
    private let decoder: FastJSONDecoder
    private let context: RequestContext

    init(handler: Handler, loop: EventLoop, epoch: StreamEpoch) {
        self.handler = handler
        decoder = FastJSONDecoder()
        context = RequestContext(loop: loop, epoch: epoch)
    }

    func dispatch(frame: UnsafeRawBufferPointer, connection: Connection, loop: EventLoop) -> Bool {
        let requestID = connection.replies.takeRequestID()
        context.begin(connection)
        let reply: Reply
        switch handler.respond(toFrame: frame, decoder: decoder, context: context) {
        case .reply(let answer):
            reply = answer
        case .undecodable(let message):
            context.end()
            loop.counters.malformedFrames.add(1, ordering: .relaxed)
            return loop.replyWithError(message, to: connection, requestID: requestID)
        case .failed(let message):
            context.end()
            return loop.replyWithError(message, to: connection, requestID: requestID)
        }
        let subscribeAt = context.subscribeAt
        let result: Bool
        switch reply {
        case .respond:
            result = context.response.bytes.withUnsafeBytes { bytes in
                loop.deliver(bytes, to: connection, requestID: requestID, subscribeAt: subscribeAt, closeAfterwards: false)
            }
        case .respondAndClose:
            result = context.response.bytes.withUnsafeBytes { bytes in
                loop.deliver(bytes, to: connection, requestID: requestID, subscribeAt: subscribeAt, closeAfterwards: true)
            }
        case .offload(let work):
            result = loop.offload(work, for: connection, requestID: requestID)
        case .respondWhenPersisted(let sequence, let write):
            if loop.journalWrites == nil {
                context.response.reset()
                write(sequence, .noJournal, &context.response)
                result = context.response.bytes.withUnsafeBytes { bytes in
                    loop.deliver(bytes, to: connection, requestID: requestID, subscribeAt: subscribeAt, closeAfterwards: false)
                }
            } else {
                assert(subscribeAt == nil, "a reply that waits for the journal does not start a subscription")
                result = loop.awaitPersistence(of: sequence, write: write, for: connection, requestID: requestID)
            }
        }
        context.end()
        return result
    }

    func admit(_ connection: ConnectionInfo) -> Admission {
        handler.admit(connection)
    }

    func review(_ connection: ConnectionInfo, isSubscribed: Bool) -> Review {
        handler.review(connection, isSubscribed: isSubscribed)
    }

    func writeError(_ message: String, into writer: inout JSONWriter) {
        handler.writeError(message, into: &writer)
    }

    func writeLagNotice(skipped: UInt64, resumeAt: UInt64, into writer: inout JSONWriter) {
        handler.writeLagNotice(skipped: skipped, resumeAt: resumeAt, into: &writer)
    }

    func connectionClosed(_ connection: ConnectionInfo, reason: CloseReason) {
        handler.connectionClosed(connection, reason: reason)
    }
}

/// The message a person reads for an error thrown while decoding or handling.
@usableFromInline
func describe(_ error: any Error) -> String {
    if let error = error as? CustomStringConvertible {
        return error.description
    }
    return String(describing: error)
}
