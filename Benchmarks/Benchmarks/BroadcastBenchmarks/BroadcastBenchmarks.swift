import Benchmark
@_spi(Benchmarks) import SecureOpsEngine

// The fan-out hot path below the loop: appending encoded alert frames to the
// broadcast ring, and building one subscriber's gathered send (the iovecs
// from its cursor to the head) the way the loop's startSend does:
// sendEnd(from:maxBytes:), then forEachRange adding each contiguous range
// to a SendOperation, then prepareHeader; the operation is recycled.
// These types are internal to the engine; the Benchmarks SPI
// (@_spi(Benchmarks)) exposes just these members.
//
// - BroadcastRing.Append256B: 1,000 appends of a 256-byte frame per sample
//   into a ring at the daemon's default retention (64 MiB), so eviction and
//   chunk turnover are included (one 256 KiB chunk per ~1,000 frames).
// - SendIovecs.1000Subscribers: 1,000 sends per sample, subscribers 1 to
//   256 frames behind the head (up to the 64 KiB per-send budget), some
//   ranges spanning two chunks.
//
// Thresholds: wall clock ±60% at p90 (shared 2-core machine), mallocs per
// 1,000 operations within 5, so a new allocation per append or per send
// fails the check.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        maxDuration: .seconds(2),
        maxIterations: 20_000,
        thresholds: [
            .wallClock: .init(relative: [.p90: 60.0]),
            .mallocCountTotal: .init(absolute: [.p90: 5]),
        ]
    )

    let frame = [UInt8](repeating: UInt8(ascii: "x"), count: 255) + [0x0A]

    // Built once, outside the measured closures (which run once per sample).
    // Loop-thread-only types; each benchmark touches only its own ring.
    nonisolated(unsafe) let appendRing = BroadcastRing(maxFrames: 1 << 20, maxBytes: 64 << 20)
    nonisolated(unsafe) let sendRing = BroadcastRing(maxFrames: 1 << 20, maxBytes: 64 << 20)
    frame.withUnsafeBytes { bytes in
        // Past the retention limit, so appends evict as in steady state.
        for _ in 0..<((64 << 20) / 256 + 1_000) { appendRing.append(bytes) }
        for _ in 0..<100_000 { sendRing.append(bytes) }
    }
    nonisolated(unsafe) let operation = SendOperation()
    nonisolated(unsafe) let pool = OutputBufferPool()

    Benchmark("BroadcastRing.Append256B") { benchmark in
        frame.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations {
                for _ in 0..<1_000 { appendRing.append(bytes) }
            }
        }
        blackHole(appendRing.nextSequence)
    }

    Benchmark("SendIovecs.1000Subscribers") { benchmark in
        let head = sendRing.nextSequence
        for _ in benchmark.scaledIterations {
            var iovecs = 0
            for subscriber in 0..<1_000 {
                let cursor = head - 1 - UInt64(subscriber % 256)
                let end = sendRing.sendEnd(from: cursor, maxBytes: 64 << 10)
                sendRing.forEachRange(from: cursor, to: end) { chunk, range in
                    operation.add(chunk, range: range)
                    return operation.hasRoom
                }
                operation.prepareHeader()
                iovecs &+= operation.iovecCount
                operation.reset(recyclingInto: pool)
            }
            blackHole(iovecs)
        }
    }
}
