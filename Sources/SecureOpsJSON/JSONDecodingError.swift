/// Why a JSON input could not be decoded, in words a person can act on.
///
/// Syntax errors carry the byte `offset` where the input went wrong and the
/// path of the innermost container open there:
/// `at byte 17: expected ',' or '}' after an object member, found '"'`.
/// Errors found while decoding a well-formed input into a type carry the
/// coding path of the value instead:
/// `alert.severity: expected one of info, low, medium, high, critical, found "apocalyptic"`.
public struct JSONDecodingError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Byte offset into the input, when the failure is syntactic.
    public var offset: Int?
    /// Where the failure is: `"alert.severity"`, `""` at top level, array items as `"checks[3]"`.
    public var codingPath: String
    /// What is wrong, e.g. `expected ',' or '}' after an object member`.
    public var reason: String

    public init(offset: Int?, codingPath: String, reason: String) {
        self.offset = offset
        self.codingPath = codingPath
        self.reason = reason
    }

    /// The message a person reads; the daemon sends it verbatim in `err` frames.
    public var description: String {
        if let offset {
            if codingPath.isEmpty { return "at byte \(offset): \(reason)" }
            return "at byte \(offset) in \(codingPath): \(reason)"
        }
        if codingPath.isEmpty { return reason }
        return "\(codingPath): \(reason)"
    }
}

extension JSONDecodingError {
    /// Converts a `DecodingError` (ours, or thrown by a type's `init(from:)`).
    init(_ error: DecodingError) {
        switch error {
        case .keyNotFound(let key, let context):
            self.init(offset: nil, codingPath: renderCodingPath(context.codingPath),
                      reason: "missing field \(jsonQuoted(key.stringValue))")
        case .dataCorrupted(let context), .typeMismatch(_, let context), .valueNotFound(_, let context):
            self.init(offset: nil, codingPath: renderCodingPath(context.codingPath),
                      reason: context.debugDescription)
        @unknown default:
            self.init(offset: nil, codingPath: "", reason: "\(error)")
        }
    }
}

/// A coding key made from document text or an array index.
struct JSONCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    /// Set for array positions, which render as `[3]` in paths.
    let isIndex: Bool

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
        isIndex = false
    }

    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
        isIndex = false
    }

    init(index: Int) {
        stringValue = "Index \(index)"
        intValue = index
        isIndex = true
    }

    static let `super` = JSONCodingKey(stringValue: "super")
}

/// Renders `[CodingKey]` as `alert.severity` / `checks[3].id`. Array
/// positions are recognised by our own index keys and by the `Index N`
/// convention that Foundation's coders use.
func renderCodingPath(_ path: [any CodingKey]) -> String {
    renderPath(path.map { key -> PathComponent in
        if let k = key as? JSONCodingKey, k.isIndex, let i = k.intValue { return .index(i) }
        if let i = key.intValue, key.stringValue == "Index \(i)" { return .index(i) }
        return .key(key.stringValue)
    })
}
