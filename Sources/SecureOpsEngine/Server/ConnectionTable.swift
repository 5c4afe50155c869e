/// Every open connection by slot, with each slot's generation: an event
/// for a connection that has closed carries the old generation and finds
/// nothing, even when the slot or the descriptor was reused
/// (docs/DESIGN.md, invariant 2).
struct ConnectionTable {
    private var slots: [Connection?] = []
    private var generations: [UInt32] = []
    private var free: [UInt32] = []
    /// Open connections.
    private(set) var count = 0

    /// Puts the connection `make` builds for a free slot (and that slot's
    /// generation) into the table.
    mutating func open(_ make: (ConnectionID) -> Connection) -> Connection {
        let slot: UInt32
        if let reused = free.popLast() {
            slot = reused
        } else {
            slot = UInt32(slots.count)
            slots.append(nil)
            generations.append(1)
        }
        let connection = make(ConnectionID(slot: slot, generation: generations[Int(slot)]))
        precondition(connection.id.slot == slot && connection.id.generation == generations[Int(slot)], "a connection built for another slot")
        slots[Int(slot)] = connection
        count += 1
        return connection
    }

    @inline(__always)
    func lookup(_ id: ConnectionID) -> Connection? {
        let slot = Int(id.slot)
        guard slot < slots.count, let connection = slots[slot], connection.id.generation == id.generation else { return nil }
        return connection
    }

    /// Frees the slot; its next connection gets a new generation (24 bits:
    /// what io_uring's user data holds, never 0).
    mutating func remove(_ connection: Connection) {
        let slot = Int(connection.id.slot)
        precondition(slots[slot] === connection, "removing a connection that is not in its slot")
        slots[slot] = nil
        var generation = (generations[slot] &+ 1) & 0xFF_FFFF
        if generation == 0 { generation = 1 }
        generations[slot] = generation
        free.append(connection.id.slot)
        count -= 1
    }

    /// The open connections now (a copy: safe to close them while iterating).
    var all: [Connection] { slots.compactMap { $0 } }
}

/// The subscribed connections, each knowing its index, so joining and
/// leaving cost O(1) however many there are.
struct Subscribers {
    private(set) var list: [Connection] = []

    var count: Int { list.count }

    mutating func add(_ connection: Connection) {
        guard !connection.isSubscribed else { return }
        connection.subscriberIndex = list.count
        list.append(connection)
    }

    mutating func remove(_ connection: Connection) {
        let index = connection.subscriberIndex
        guard index >= 0 else { return }
        precondition(list[index] === connection, "subscriber index out of step")
        let last = list.removeLast()
        if last !== connection {
            list[index] = last
            last.subscriberIndex = index
        }
        connection.subscriberIndex = -1
    }
}

/// When the loop looks at its deadlines next, and when a failed accept is
/// tried again.
struct Timers {
    /// Deadlines are checked this often: frames that take too long to
    /// arrive, sends that take too long to finish, the shutdown's grace.
    static let housekeepingInterval: UInt64 = 250_000_000
    /// How long a listener rests after accept ran out of descriptors.
    static let acceptRetryDelay: UInt64 = 100_000_000

    private(set) var nextHousekeeping: UInt64 = 0
    /// Listener index → when to arm its accept again.
    private(set) var acceptRetries: [Int: UInt64] = [:]

    mutating func housekeepingDue(_ now: UInt64) -> Bool {
        guard now >= nextHousekeeping else { return false }
        nextHousekeeping = now + Self.housekeepingInterval
        return true
    }

    mutating func housekeepNow() { nextHousekeeping = 0 }

    /// How long the loop may wait for events before a timer is due.
    func waitBudget(now: UInt64, maximum: Int64) -> Int64 {
        guard nextHousekeeping > now else { return 0 }
        return min(maximum, Int64(clamping: nextHousekeeping - now))
    }

    func isRetryingAccept(_ listener: Int) -> Bool { acceptRetries[listener] != nil }

    /// Returns true when the retry was not already scheduled.
    mutating func retryAccept(_ listener: Int, at deadline: UInt64) -> Bool {
        // Housekeeping re-arms it: no later than the deadline.
        nextHousekeeping = min(nextHousekeeping, deadline)
        return acceptRetries.updateValue(deadline, forKey: listener) == nil
    }

    /// Listeners whose rest is over (and forgets them).
    mutating func acceptRetriesDue(_ now: UInt64) -> [Int] {
        let due = acceptRetries.filter { $0.value <= now }.map(\.key)
        for listener in due { acceptRetries[listener] = nil }
        return due
    }
}
