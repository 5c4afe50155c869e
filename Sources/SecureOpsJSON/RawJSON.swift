/// The validated JSON text of one value, kept as bytes and forwarded
/// unparsed (an alert's `details`).
///
/// Decoding one from `FastJSONDecoder` copies the value's span of the input
/// (one allocation); from any other decoder it goes through `JSONValue`.
/// Encoding writes the bytes verbatim with `FastJSONEncoder`/`JSONWriter`.
public struct RawJSON: Codable, Equatable, Sendable, CustomStringConvertible {
    /// The JSON text of one value, as it appeared (no surrounding whitespace).
    public let bytes: [UInt8]

    /// Validates `bytes` as exactly one JSON value (strict RFC 8259, optional
    /// surrounding whitespace, which is dropped).
    public init(validating bytes: some Collection<UInt8>) throws {
        let array = Array(bytes)
        let doc = JSONDocument(maxDepth: 512, initialCapacity: 16)
        try array.withUnsafeBytes { buffer in
            defer { doc.detach() }
            try doc.parse(buffer)
        }
        // The root's span, without the whitespace around it.
        let root = doc[0]
        var start = Int(root.start), end = Int(root.end)
        if root.kind == .string {
            start -= 1
            end += 1
        }
        self.bytes = start == 0 && end == array.count ? array : Array(array[start..<end])
    }

    /// Encodes `value` (compact, object members in order).
    public init(_ value: JSONValue) {
        var writer = JSONWriter(capacity: 64)
        writer.value(value)
        bytes = writer.bytes
    }

    /// Wraps bytes known to be exactly one valid JSON value.
    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public static let null = RawJSON(unchecked: Array("null".utf8))

    public var text: String { String(decoding: bytes, as: UTF8.self) }
    public var description: String { text }
    public var isNull: Bool { bytes.count == 4 && bytes.first == 0x6E }
    public var isObject: Bool { bytes.first == 0x7B }
    public var isArray: Bool { bytes.first == 0x5B }
    public var isString: Bool { bytes.first == 0x22 }

    /// The value as a tree.
    public var value: JSONValue {
        // Valid by construction; the only failure would be a depth above the
        // default limit, which `init(validating:)` also enforces.
        (try? FastJSONDecoder().decode(JSONValue.self, from: bytes)) ?? .null
    }

    public init(from decoder: any Decoder) throws {
        if let impl = decoder as? JSONDecoderImpl {
            self.init(unchecked: Array(impl.document.span(of: impl.cursor)))
            return
        }
        self.init(try JSONValue(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        if let impl = encoder as? JSONEncoderImpl {
            impl.writeRaw(self)
            return
        }
        try value.encode(to: encoder)
    }
}
