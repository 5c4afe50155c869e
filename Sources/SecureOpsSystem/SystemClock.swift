import Glibc

/// The one clock every part reads: CLOCK_MONOTONIC for deadlines and
/// durations (it never jumps), CLOCK_REALTIME for timestamps people read.
public enum SystemClock {
    /// Nanoseconds since an arbitrary point (boot); only differences mean
    /// anything.
    @inline(__always)
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Seconds on the same clock, for durations printed to people.
    public static func monotonicSeconds() -> Double {
        Double(monotonicNanoseconds()) / 1e9
    }

    /// Milliseconds since the Unix epoch.
    public static func realtimeMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
