import Glibc

/// The receiving half of one client connection, shared by the blocking and
/// the async client: bytes from the server cut into frames by the engine's
/// own `LineFramer`, so both clients frame exactly as the daemon does
/// (WIRE.md, "Framing": a trailing `\r` dropped, empty lines skipped, a
/// line over `maxFrameBytes` refused instead of buffered).
///
/// Whole frames are handed out in place, as slices of the receive buffer;
/// only a line split across reads is copied (into the framer's carry).
struct FrameReader {
    private var framer: LineFramer
    /// The last `recv`'s bytes; `storage[unread..<filled]` are not yet
    /// framed.
    private var storage: [UInt8]
    private var filled = 0
    private var unread = 0

    /// How much one `recv` asks for.
    static let chunk = 64 << 10

    init(maxFrameBytes: Int) {
        framer = LineFramer(maxFrameBytes: maxFrameBytes)
        storage = [UInt8](repeating: 0, count: Self.chunk)
    }

    var maxFrameBytes: Int { framer.maxFrameBytes }

    /// Calls `body` with the next whole frame (without its newline; valid
    /// only during the call) and returns what it returns; nil when no whole
    /// frame is buffered: `receive` more. Throws when a line outgrows
    /// `maxFrameBytes` (the connection cannot go on).
    mutating func nextFrame<Result>(_ body: (UnsafeRawBufferPointer) -> Result) throws(IpcError) -> Result? {
        guard unread < filled else { return nil }
        var result: Result?
        let (from, to) = (unread, filled)
        let outcome = storage.withUnsafeBytes { bytes in
            // One frame per call: pause after it, the rest stays unread.
            framer.consume(UnsafeRawBufferPointer(rebasing: bytes[from..<to])) { frame in
                result = body(frame)
                return .pause
            }
        }
        switch outcome {
        case .consumed:
            // Everything was framed; a partial line is in the framer's carry.
            unread = filled
        case .paused(let resumeAt):
            unread += resumeAt
        case .frameTooLarge:
            throw .codec("a frame from the server is longer than \(framer.maxFrameBytes) bytes")
        case .stopped:
            preconditionFailure("the frame handler never stops the framer")
        }
        return result
    }

    enum Received: Equatable {
        /// New bytes: look for frames again.
        case bytes
        /// The server closed the connection (everything it sent was read).
        case endOfStream
        /// Nothing to read yet (non-blocking reads only).
        case wouldBlock
        /// The read failed with this errno.
        case failed(Int32)
    }

    /// One `recv` into the buffer. Call it only once `nextFrame` returned
    /// nil: the previous bytes are reused.
    mutating func receive(from fd: Int32, nonBlocking: Bool) -> Received {
        precondition(unread == filled, "receive() before every buffered frame was taken")
        let n = storage.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, nonBlocking ? Int32(MSG_DONTWAIT) : 0) }
        let code = errno
        if n > 0 {
            filled = n
            unread = 0
            return .bytes
        }
        filled = 0
        unread = 0
        if n == 0 { return .endOfStream }
        switch code {
        case EAGAIN, EINTR: return .wouldBlock
        // The server closed with our input unread: everything it sent has
        // been read, so this is its end of stream.
        case ECONNRESET: return .endOfStream
        default: return .failed(code)
        }
    }
}
