import SecureOpsJSON
/// The identity of one engine's broadcast stream (see `Engine.epoch`).
///
/// Sequence numbers are comparable only within one epoch: a restarted
/// server starts again at 1 with a new epoch. On the wire it is 16 lowercase
/// hexadecimal digits in a string (a JSON number would lose bits in clients
/// that read numbers as doubles).
public struct StreamEpoch: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Parses the wire form (16 hexadecimal digits); nil for anything else.
    public init?(_ text: String) {
        guard text.utf8.count == 16, let value = UInt64(text, radix: 16) else { return nil }
        rawValue = value
    }

    /// The wire form: 16 lowercase hexadecimal digits.
    public var description: String {
        let digits = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - digits.utf8.count) + digits
    }

    /// A fresh epoch from the system's random source (`getrandom`).
    package static func random() -> StreamEpoch {
        var generator = SystemRandomNumberGenerator()
        return StreamEpoch(rawValue: generator.next())
    }
}
