import Histogram

/// Publish-to-delivery latencies, recorded at the cost of one increment.
///
/// A receiving core sees millions of deliveries per second, so the per-frame
/// path is a flat array of 1,024-ns buckets (a shift, not a division; up to
/// 1.07 s, 8 MiB, of which only the few buckets around the current latency
/// are ever hot); slower deliveries go straight into the HdrHistogram. (With
/// 134 ms of buckets, the slow tail of a saturated 19,000-subscriber run,
/// p99 175 ms, went down the slower HdrHistogram path.)
/// `histogram()` folds the buckets into an HdrHistogram (3 significant
/// digits) for percentiles. Resolution: about 1 µs.
final class LatencyRecorder {
    static let bucketCount = 1 << 20
    static let bucketShift: UInt64 = 10
    private let counts: UnsafeMutablePointer<UInt64>
    private var slow = LatencyRecorder.emptyHistogram()

    init() {
        counts = .allocate(capacity: Self.bucketCount)
        counts.initialize(repeating: 0, count: Self.bucketCount)
    }

    deinit { counts.deallocate() }

    static func emptyHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
    }

    @inline(__always)
    func record(nanoseconds: UInt64) {
        let bucket = nanoseconds >> Self.bucketShift
        if bucket < UInt64(Self.bucketCount) {
            counts[Int(bucket)] &+= 1
        } else {
            _ = slow.record(min(nanoseconds, 99_000_000_000))
        }
    }

    /// Everything recorded so far, as an HdrHistogram of nanoseconds (each
    /// bucket at its upper edge, so percentiles never understate).
    func histogram() -> Histogram<UInt64> {
        var histogram = slow
        for bucket in 0..<Self.bucketCount where counts[bucket] != 0 {
            _ = histogram.record(UInt64(bucket + 1) << Self.bucketShift, count: counts[bucket])
        }
        return histogram
    }

    func reset() {
        counts.update(repeating: 0, count: Self.bucketCount)
        slow.reset()
    }
}
