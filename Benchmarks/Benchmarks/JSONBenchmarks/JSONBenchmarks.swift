import Benchmark
import BenchmarkFrames
import Foundation
import SecureOpsEngine

// Per-frame numbers: every benchmark runs `scaledIterations` (1,000) frames
// per sample, and package-benchmark reports per frame (the `*` rows).
//
// Thresholds (Thresholds/*.p90.json, written by `thresholds update`) are
// checked by `thresholds check`: our wall clock may move by 60% at p90 (a
// shared 2-core machine is noisy; a lost fast path costs 2x) and malloc
// counts (per 1,000 frames, deterministic) may move by 50, i.e. no new
// allocation per frame.
// Foundation's runs are the reference for the ratio, not our code: they get a
// wide tolerance. A check exits 2 on a regression and 4 on an improvement
// (then update the thresholds).
//
// Names have no spaces: package-benchmark writes threshold files with spaces
// replaced by '_' but looks them up by the raw name.

let benchmarks: @Sendable () -> Void = {
    let ours: [BenchmarkMetric: BenchmarkThresholds] = [
        .wallClock: .init(relative: [.p90: 60.0]),
        .mallocCountTotal: .init(absolute: [.p90: 50]),  // per 1,000 frames
    ]
    let reference: [BenchmarkMetric: BenchmarkThresholds] = [
        .wallClock: .init(relative: [.p90: 90.0]),
        .mallocCountTotal: .init(absolute: [.p90: 1_000]),
    ]

    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 10_000,
        thresholds: ours
    )

    let mix = BenchmarkFrames.mix
    let mixData = mix.map { Data($0) }

    Benchmark("DecodeMix.FastJSONDecoder") { benchmark in
        let decoder = FastJSONDecoder()
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(try decoder.decode(IpcRequest.self, from: mix[i]))
            i = i == mix.count - 1 ? 0 : i + 1
        }
    }

    Benchmark("DecodeMix.FoundationJSONDecoder",
              configuration: .init(thresholds: reference)) { benchmark in
        let decoder = JSONDecoder()
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(try decoder.decode(IpcRequest.self, from: mixData[i]))
            i = i == mixData.count - 1 ? 0 : i + 1
        }
    }

    let ping = BenchmarkFrames.ping
    let pingData = Data(ping)
    Benchmark("DecodePing.FastJSONDecoder") { benchmark in
        let decoder = FastJSONDecoder()
        for _ in benchmark.scaledIterations {
            blackHole(try decoder.decode(IpcRequest.self, from: ping))
        }
    }

    Benchmark("DecodePing.FoundationJSONDecoder",
              configuration: .init(thresholds: reference)) { benchmark in
        let decoder = JSONDecoder()
        for _ in benchmark.scaledIterations {
            blackHole(try decoder.decode(IpcRequest.self, from: pingData))
        }
    }

    let publish = BenchmarkFrames.publish
    Benchmark("DecodePublish.FastJSONDecoder") { benchmark in
        let decoder = FastJSONDecoder()
        for _ in benchmark.scaledIterations {
            blackHole(try decoder.decode(IpcRequest.self, from: publish))
        }
    }

    let alerts = BenchmarkFrames.alerts
    Benchmark("EncodeAlertFrame.JSONWriter") { benchmark in
        var writer = JSONWriter(capacity: 1024)
        var i = 0
        for _ in benchmark.scaledIterations {
            writer.reset()
            BenchmarkFrames.encodeAlert(alerts[i], into: &writer)
            blackHole(writer.bytes.count)
            i = i == alerts.count - 1 ? 0 : i + 1
        }
    }
}
