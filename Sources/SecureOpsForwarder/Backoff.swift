/// Delays between retries: doubling from `initial` up to `maximum`, with up
/// to a quarter of jitter so that many daemons do not retry in step.
struct Backoff {
    let initial: Duration
    let maximum: Duration
    private var current: Duration?

    init(initial: Duration, maximum: Duration) {
        assert(initial > .zero && maximum >= initial)
        self.initial = initial
        self.maximum = maximum
    }

    mutating func next() -> Duration {
        let delay = current.map { min($0 * 2, maximum) } ?? initial
        current = delay
        return delay + delay * Double.random(in: 0..<0.25)
    }

    /// The slowest delay, for failures that need an operator.
    mutating func slowest() -> Duration {
        current = maximum
        return maximum
    }

    mutating func reset() {
        current = nil
    }
}
