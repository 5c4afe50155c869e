import SecureOpsSystem

public enum JournalError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A system call on the journal's files failed.
    case io(SystemError)
    /// A segment's header is not one this journal wrote, or belongs to
    /// another stream.
    case foreignSegment(name: String, reason: String)

    public var description: String {
        switch self {
        case .io(let error): "journal: \(error)"
        case .foreignSegment(let name, let reason): "journal: segment \(name) \(reason)"
        }
    }

    /// The errno behind an I/O failure (ENOSPC for a full disk).
    public var code: Int32? {
        if case .io(let error) = self { return error.code }
        return nil
    }
}

/// What opening a journal found and did about it: logged by the caller,
/// and reported as an alert when something was lost.
public struct JournalRecovery: Sendable, Equatable {
    /// The journal did not exist (or had no segments): a new stream.
    public var createdNewStream = false
    public var segments = 0
    public var records = 0
    /// Bytes cut from the end of the newest segment: an interrupted write.
    public var tornTailBytesCut = 0
    public var tornTailReason: String?
    /// Damage before the end: whole records follow bytes that are not one.
    /// Replay stops there; every segment was moved aside into
    /// `movedAsideTo` (nothing is deleted) and a new stream began, because
    /// which sequences the damaged part had issued cannot be known.
    public var damage: Damage?

    public struct Damage: Sendable, Equatable, CustomStringConvertible {
        public var segment: String
        public var offset: Int
        public var reason: String
        /// The last sequence read intact before the damage.
        public var lastIntactSequence: UInt64?
        /// The directory (inside the journal's) holding the old segments.
        public var movedAsideTo: String

        public var description: String {
            "segment \(segment) is damaged at byte \(offset) (\(reason)) after sequence \(lastIntactSequence.map(String.init) ?? "none"); its segments were moved to \(movedAsideTo) and a new stream begins"
        }
    }
}
