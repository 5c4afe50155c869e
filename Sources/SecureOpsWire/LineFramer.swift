import Glibc

/// Splits a byte stream into newline-terminated frames without copying
/// whole lines.
///
/// Complete lines are handed out as slices of the caller's buffer (the
/// provided buffer the kernel filled); only a partial line at the end is
/// copied into `carry`, to be completed by the next read. A trailing `\r` is
/// dropped and empty lines are skipped (WIRE.md, "Framing"). A line longer
/// than `maxFrameBytes` is never buffered: the framer reports it and stops.
public struct LineFramer: Sendable {
    /// Bytes of an unfinished line from earlier reads.
    public private(set) var carry: [UInt8] = []
    public let maxFrameBytes: Int

    public enum Outcome: Equatable, Sendable {
        /// Every byte was consumed; any partial line is in `carry`.
        case consumed
        /// A frame exceeded `maxFrameBytes`. The framer is now unusable: the
        /// connection must answer with one error and close.
        case frameTooLarge
        /// The line handler asked to stop (the connection is closing); the
        /// rest of the input was dropped.
        case stopped
        /// The line handler asked to pause after a frame: the bytes from
        /// `resumeAt` on (perhaps none) were not looked at; feed them again
        /// later. (`carry` is empty: a pause only ever follows a whole frame.)
        case paused(resumeAt: Int)
    }

    /// What the line handler wants after a frame.
    public enum Next: Sendable {
        /// The next frame, if there is one.
        case proceed
        /// Nothing more now: the rest is handed back (`Outcome.paused`).
        case pause
        /// Nothing more ever: the rest is dropped (`Outcome.stopped`).
        case stop
    }

    public init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Feeds `bytes` and calls `onFrame` for every complete, non-empty frame,
    /// which says whether to go on, pause or stop.
    @inline(__always)
    public mutating func consume(
        _ bytes: UnsafeRawBufferPointer,
        onFrame: (UnsafeRawBufferPointer) -> Next
    ) -> Outcome {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .consumed }
        var start = 0
        let end = bytes.count

        if !carry.isEmpty {
            // Finish the line begun in an earlier read.
            guard let newline = Self.findNewline(base, from: 0, to: end) else {
                guard carry.count + end <= maxFrameBytes + 1 else { return tooLarge() }
                carry.append(contentsOf: bytes)
                return .consumed
            }
            guard carry.count + newline <= maxFrameBytes + 1 else { return tooLarge() }
            carry.append(contentsOf: UnsafeRawBufferPointer(start: base, count: newline))
            let keepGoing = carry.withUnsafeBytes { line in emit(line, onFrame) }
            if case .tooLarge = keepGoing { return tooLarge() }
            carry.removeAll(keepingCapacity: carry.capacity <= 4096)
            start = newline + 1
            switch keepGoing {
            case .stop: return .stopped
            case .pause: return .paused(resumeAt: start)
            case .next, .tooLarge: break
            }
        }

        while start < end {
            guard let newline = Self.findNewline(base, from: start, to: end) else {
                let tail = end - start
                guard tail <= maxFrameBytes + 1 else { return tooLarge() }
                carry.append(contentsOf: UnsafeRawBufferPointer(start: base + start, count: tail))
                return .consumed
            }
            let result = emit(UnsafeRawBufferPointer(start: base + start, count: newline - start), onFrame)
            start = newline + 1
            switch result {
            case .next: break
            case .stop: return .stopped
            case .pause: return .paused(resumeAt: start)
            case .tooLarge: return tooLarge()
            }
        }
        return .consumed
    }

    private enum Emit { case next, pause, stop, tooLarge }

    @inline(__always)
    private func emit(_ line: UnsafeRawBufferPointer, _ onFrame: (UnsafeRawBufferPointer) -> Next) -> Emit {
        var count = line.count
        if count > 0 && line[count - 1] == UInt8(ascii: "\r") { count -= 1 }
        if count == 0 { return .next }
        if count > maxFrameBytes { return .tooLarge }
        switch onFrame(UnsafeRawBufferPointer(start: line.baseAddress, count: count)) {
        case .proceed: return .next
        case .pause: return .pause
        case .stop: return .stop
        }
    }

    private mutating func tooLarge() -> Outcome {
        carry = []
        return .frameTooLarge
    }

    @inline(__always)
    static func findNewline(_ base: UnsafeRawPointer, from: Int, to: Int) -> Int? {
        guard let hit = memchr(base + from, 0x0A, to - from) else { return nil }
        return UnsafeRawPointer(hit) - base
    }
}
