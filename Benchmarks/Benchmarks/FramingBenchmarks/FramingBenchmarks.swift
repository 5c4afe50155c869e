import Benchmark
import BenchmarkFrames
import SecureOpsEngine

// The line splitter (LineFramer) on what a connection's receive buffers
// hold: the realistic request mix (Sources/BenchmarkFrames), 1,000 frames
// per sample, every one newline-terminated.
//
// - SplitLines.WholeBuffer: the 1,000 frames in one buffer (no frame cut):
//   the memchr scan and the per-frame callback alone.
// - SplitLines.4KiBReads: the same bytes in 4 KiB reads, as a busy socket
//   delivers them: about one frame in twenty is cut and finished from the
//   carry buffer.
//
// Both must stay allocation-free in steady state (the carry keeps its
// capacity), so the thresholds allow no malloc per 1,000 frames beyond
// noise; wall clock may move by 60% at p90 (shared 2-core machine).

let benchmarks: @Sendable () -> Void = {
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .wallClock: .init(relative: [.p90: 60.0]),
        .mallocCountTotal: .init(absolute: [.p90: 5]),  // per 1,000 frames
    ]
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        maxDuration: .seconds(2),
        maxIterations: 20_000,
        thresholds: thresholds
    )

    // 1,000 frames: the 200-frame mix five times, each line ending in \n.
    var stream: [UInt8] = []
    for _ in 0..<5 {
        for frame in BenchmarkFrames.mix { stream += frame + [0x0A] }
    }
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: stream.count, alignment: 64)
    bytes.copyBytes(from: stream)
    let whole = UnsafeRawBufferPointer(bytes)

    Benchmark("SplitLines.WholeBuffer") { benchmark in
        var framer = LineFramer(maxFrameBytes: 1 << 20)
        for _ in benchmark.scaledIterations {
            var frames = 0
            var length = 0
            let outcome = framer.consume(whole) { line in
                frames &+= 1
                length &+= line.count
                return .proceed
            }
            precondition(outcome == .consumed && frames == 1_000)
            blackHole(length)
        }
    }

    Benchmark("SplitLines.4KiBReads") { benchmark in
        var framer = LineFramer(maxFrameBytes: 1 << 20)
        let read = 4096
        for _ in benchmark.scaledIterations {
            var frames = 0
            var offset = 0
            while offset < whole.count {
                let count = min(read, whole.count - offset)
                _ = framer.consume(UnsafeRawBufferPointer(rebasing: whole[offset..<(offset + count)])) { line in
                    frames &+= line.count > 0 ? 1 : 0
                    return .proceed
                }
                offset += count
            }
            precondition(frames == 1_000)
            blackHole(frames)
        }
    }
}
