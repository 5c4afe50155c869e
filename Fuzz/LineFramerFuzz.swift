// libFuzzer target for the line splitter (Framing/LineFramer.swift).
//
// The first byte picks a frame limit, the next bytes a chunking pattern;
// the rest is the stream. The stream is fed in those chunks and the frames
// that come out are compared with a reference split done the obvious way:
// split on "\n", drop one trailing "\r", skip empty lines, stop at the first
// line longer than the limit (or an unterminated tail that already is).

@_cdecl("LLVMFuzzerTestOneInput")
public func lineFramerFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 4 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = [1, 2, 7, 16, 64, 300, 4096]
    let limit = limits[Int(input[0]) % limits.count]
    let pattern = Array(input[1..<4]).map { Int($0 % 37) + 1 }
    let stream = Array(input[4...])

    // The engine's framer, fed in chunks.
    var framer = LineFramer(maxFrameBytes: limit)
    var produced: [[UInt8]] = []
    var tooLarge = false
    var offset = 0
    var step = 0
    while offset < stream.count {
        let length = min(pattern[step % pattern.count], stream.count - offset)
        step += 1
        let outcome = stream[offset..<(offset + length)].withUnsafeBytes { chunk in
            framer.consume(chunk) { frame in
                produced.append(Array(frame))
                return .proceed
            }
        }
        offset += length
        precondition(framer.carry.count <= limit + 1, "carry exceeds the frame limit")
        if outcome == .frameTooLarge {
            tooLarge = true
            break
        }
    }

    // The reference.
    var expected: [[UInt8]] = []
    var expectTooLarge = false
    var start = 0
    for (index, byte) in stream.enumerated() where byte == 0x0A {
        var line = Array(stream[start..<index])
        start = index + 1
        if line.last == 0x0D { line.removeLast() }
        if line.count > limit {
            expectTooLarge = true
            break
        }
        if !line.isEmpty { expected.append(line) }
    }
    if !expectTooLarge && stream.count - start > limit + 1 { expectTooLarge = true }

    precondition(tooLarge == expectTooLarge, "frame limit verdicts differ")
    if !tooLarge {
        precondition(produced == expected, "frames differ from the reference split")
        let tail = Array(stream[start...])
        precondition(framer.carry == tail, "the partial line is not what was left over")
    } else {
        // Everything before the oversized line was still delivered, in order.
        precondition(produced.count <= expected.count + 1)
        precondition(Array(expected.prefix(produced.count)) == produced, "frames before the limit differ")
    }
    return 0
}
