/// The publishes in flight and the acknowledged cursor: the highest
/// sequence S such that every sequence up to S that was published has
/// been acknowledged. Acks may come in any order; the cursor only moves
/// over a contiguous acknowledged front.
struct AckWindow {
    private(set) var cursor: UInt64
    /// Published, not yet behind the cursor, in publish (= sequence) order;
    /// `head` is the first live entry (the array is compacted lazily).
    private var inFlight: [(sequence: UInt64, publishedAt: ContinuousClock.Instant)] = []
    private var head = 0
    /// Acked sequences in flight that are not yet at the front.
    private var ackedAhead: Set<UInt64> = []

    init(cursor: UInt64) {
        self.cursor = cursor
    }

    var count: Int { inFlight.count - head }

    /// The sequence published last, nil when nothing is in flight.
    var lastPublished: UInt64? { count > 0 ? inFlight[inFlight.count - 1].sequence : nil }

    /// When the oldest publish in flight went out.
    var oldestPublishedAt: ContinuousClock.Instant? { count > 0 ? inFlight[head].publishedAt : nil }

    mutating func published(_ sequence: UInt64, at instant: ContinuousClock.Instant) {
        // Out of order here would let the cursor pass an unacked sequence.
        precondition(sequence > (lastPublished ?? cursor), "publishes must go out in sequence order")
        inFlight.append((sequence, instant))
    }

    /// Records an ack; true when the cursor moved. Acks for sequences not
    /// in flight (already behind the cursor, or abandoned) change nothing.
    mutating func acknowledged(_ sequence: UInt64) -> Bool {
        guard count > 0, sequence >= inFlight[head].sequence, sequence <= lastPublished! else { return false }
        if sequence != inFlight[head].sequence {
            ackedAhead.insert(sequence)
            return false
        }
        cursor = sequence
        head += 1
        while head < inFlight.count, ackedAhead.remove(inFlight[head].sequence) != nil {
            cursor = inFlight[head].sequence
            head += 1
        }
        if head > 1024 && head * 2 > inFlight.count {
            inFlight.removeFirst(head)
            head = 0
        }
        return true
    }

    /// Forgets everything in flight: it will be published again from
    /// cursor + 1 (the stream drops what it already holds by message id).
    mutating func abandonInFlight() {
        inFlight.removeAll(keepingCapacity: true)
        head = 0
        ackedAhead.removeAll(keepingCapacity: true)
    }
}
