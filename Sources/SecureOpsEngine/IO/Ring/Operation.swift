/// What an SQE was for, packed into its 64-bit `user_data` together with the
/// connection slot and that slot's generation.
///
/// A completion for a connection that has since closed carries the old
/// generation; the loop compares it with the slot's current one and drops the
/// completion, so it can never act on a newer connection that reused the slot
/// or the file descriptor (docs/DESIGN.md, invariant 2).
enum OperationKind: UInt8 {
    case accept = 1
    case receive = 2
    case send = 3
    case wake = 4
    case cancel = 5
    case hangupPoll = 6
    /// The journal's write (one in flight at a time).
    case fileWrite = 7
    /// The journal's `fdatasync` (one in flight at a time).
    case fileSync = 8
}

struct OperationTag: Equatable {
    var kind: OperationKind
    var slot: UInt32
    var generation: UInt32

    init(kind: OperationKind, slot: UInt32 = 0, generation: UInt32 = 0) {
        self.kind = kind
        self.slot = slot
        self.generation = generation & 0xFF_FFFF
    }

    /// kind (8 bits) | generation (24 bits) | slot (32 bits)
    @inline(__always)
    var userData: UInt64 {
        UInt64(kind.rawValue) << 56 | UInt64(generation & 0xFF_FFFF) << 32 | UInt64(slot)
    }

    @inline(__always)
    init?(userData: UInt64) {
        guard let kind = OperationKind(rawValue: UInt8(truncatingIfNeeded: userData >> 56)) else { return nil }
        self.kind = kind
        self.generation = UInt32(truncatingIfNeeded: userData >> 32) & 0xFF_FFFF
        self.slot = UInt32(truncatingIfNeeded: userData)
    }
}
