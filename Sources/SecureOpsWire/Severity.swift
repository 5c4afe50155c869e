import SecureOpsJSON
/// How serious an alert is. The wire spells these in lower case.
public enum Severity: String, Sendable, Codable, CaseIterable, Comparable, FastJSONDecodable {
    case info, low, medium, high, critical

    // Hand-written: the synthesized one goes through the standard library's
    // table search, several times slower on the decode path.
    public init?(rawValue: String) {
        switch rawValue {
        case "info": self = .info
        case "low": self = .low
        case "medium": self = .medium
        case "high": self = .high
        case "critical": self = .critical
        default: return nil
        }
    }

    public init(from decoder: any Decoder) throws {
        try self.init(container: decoder.singleValueContainer())
    }

    /// FastJSONDecoder's path: the same logic over its concrete container.
    public init(fastJSON decoder: FastJSONValueDecoder) throws {
        try self.init(container: decoder.singleValueContainer())
    }

    init<C: SingleValueDecodingContainer>(container: C) throws {
        let text = try container.decode(String.self)
        guard let severity = Severity(rawValue: text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "expected one of info, low, medium, high, critical, found \(jsonQuoted(text))")
        }
        self = severity
    }

    public static func < (lhs: Severity, rhs: Severity) -> Bool {
        lhs.rank < rhs.rank
    }

    private var rank: Int {
        switch self {
        case .info: 0
        case .low: 1
        case .medium: 2
        case .high: 3
        case .critical: 4
        }
    }
}
