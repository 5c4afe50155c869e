/// Any JSON value, as a tree.
///
/// - Objects keep their members in document order, duplicates included (as
///   they appear); `JSONObject[key]` answers the last one, like most parsers.
/// - Numbers keep their exact text, so `18446744073709551616` or
///   `0.1000000000000000055511151231257827` survive a round trip unchanged.
///   Equality of numbers is equality of text (`1.0 != 1`).
///
/// Decodes from any `Decoder`; from `FastJSONDecoder` it is built straight
/// from the validated input without recursion.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// A JSON number, kept as its RFC 8259 text.
public struct JSONNumber: Equatable, Hashable, Sendable, CustomStringConvertible, Codable {
    /// The number as written, e.g. `-12`, `1.5e300`.
    public let text: String

    /// Validates `text` against the RFC 8259 number grammar.
    public init?(text: String) {
        guard isJSONNumber(text.utf8) else { return nil }
        self.text = text
    }

    init(unchecked text: String) { self.text = text }

    public init(_ value: Int) { text = String(value) }
    public init(_ value: Int64) { text = String(value) }
    public init(_ value: UInt64) { text = String(value) }

    /// Nil for infinities and NaN, which JSON cannot express.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        text = value.description
    }

    public var description: String { text }

    /// The value as an Int64, when it is an integer in range (exactly).
    public var int64Value: Int64? { exactInteger(Int64.self) }
    /// The value as a UInt64, when it is an integer in range (exactly).
    public var uint64Value: UInt64? { exactInteger(UInt64.self) }
    /// The nearest Double (infinite when out of range).
    public var doubleValue: Double { Double(text) ?? .nan }

    private func exactInteger<I: FixedWidthInteger>(_ type: I.Type) -> I? {
        var text = text
        return text.withUTF8 { bytes -> I? in
            let doc = JSONDocument(maxDepth: 1, initialCapacity: 8)
            guard (try? doc.parse(UnsafeRawBufferPointer(bytes))) != nil else { return nil }
            defer { doc.detach() }
            return doc.integer(at: 0, as: I.self)
        }
    }

    public init(from decoder: any Decoder) throws {
        if let impl = decoder as? JSONDecoderImpl, impl.document[impl.cursor].kind == .number {
            self.init(unchecked: String(decoding: impl.document.span(of: impl.cursor), as: UTF8.self))
            return
        }
        let container = try decoder.singleValueContainer()
        if let i = try? container.decode(Int64.self) {
            self.init(i)
        } else if let u = try? container.decode(UInt64.self) {
            self.init(u)
        } else {
            let d = try container.decode(Double.self)
            guard let n = JSONNumber(d) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a finite number")
            }
            self = n
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if let impl = encoder as? JSONEncoderImpl {
            impl.writeNumber(self)
            return
        }
        var container = encoder.singleValueContainer()
        if let i = int64Value {
            try container.encode(i)
        } else if let u = uint64Value {
            try container.encode(u)
        } else {
            try container.encode(doubleValue)
        }
    }
}

/// Whether `bytes` is exactly one RFC 8259 number.
func isJSONNumber(_ bytes: some Collection<UInt8>) -> Bool {
    var it = bytes.makeIterator()
    var b = it.next()
    func digit(_ x: UInt8?) -> Bool { x.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }
    if b == 0x2D { b = it.next() }
    guard digit(b) else { return false }
    if b == 0x30 {
        b = it.next()
    } else {
        repeat { b = it.next() } while digit(b)
    }
    if b == 0x2E {
        b = it.next()
        guard digit(b) else { return false }
        repeat { b = it.next() } while digit(b)
    }
    if b == 0x65 || b == 0x45 {
        b = it.next()
        if b == 0x2B || b == 0x2D { b = it.next() }
        guard digit(b) else { return false }
        repeat { b = it.next() } while digit(b)
    }
    return b == nil
}

/// A JSON object: members in document order, duplicate keys kept.
public struct JSONObject: Equatable, Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public struct Member: Equatable, Sendable {
        public var key: String
        public var value: JSONValue
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    public var members: [Member]

    public init(_ members: [Member] = []) { self.members = members }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        members = elements.map { Member(key: $0.0, value: $0.1) }
    }

    /// The value of the last member named `key`; setting replaces every
    /// member of that name by one at the position of the first (or appends).
    public subscript(key: String) -> JSONValue? {
        get { members.last { $0.key == key }?.value }
        set {
            if let first = members.firstIndex(where: { $0.key == key }) {
                if let newValue {
                    members[first].value = newValue
                    var i = members.count - 1
                    while i > first {
                        if members[i].key == key { members.remove(at: i) }
                        i -= 1
                    }
                } else {
                    members.removeAll { $0.key == key }
                }
            } else if let newValue {
                members.append(Member(key: key, value: newValue))
            }
        }
    }

    public var keys: [String] { members.map(\.key) }
    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public func makeIterator() -> IndexingIterator<[Member]> { members.makeIterator() }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    public init(floatLiteral value: Double) { self = JSONNumber(value).map { .number($0) } ?? .null }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(JSONObject(elements.map { JSONObject.Member(key: $0.0, value: $0.1) }))
    }
}

extension JSONValue {
    /// Parses one JSON value strictly (see `FastJSONDecoder`).
    public init(parsing bytes: some Collection<UInt8>, maxDepth: Int = 512) throws {
        self = try FastJSONDecoder(maxDepth: maxDepth).decode(JSONValue.self, from: Array(bytes))
    }

    /// Parses one JSON value strictly (see `FastJSONDecoder`).
    public init(parsing text: String, maxDepth: Int = 512) throws {
        self = try FastJSONDecoder(maxDepth: maxDepth).decode(JSONValue.self, from: text)
    }

    /// The JSON text of this value (compact, keys in order).
    public var jsonText: String {
        var writer = JSONWriter()
        writer.value(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

// MARK: - Codable

extension JSONValue {
    public init(from decoder: any Decoder) throws {
        if let impl = decoder as? JSONDecoderImpl {
            self = impl.document.buildValue(at: impl.cursor)
            return
        }
        // Any other decoder (Foundation's JSONDecoder, a property list...):
        // probe the shapes in turn.
        if let container = try? decoder.singleValueContainer() {
            if container.decodeNil() { self = .null; return }
            if let b = try? container.decode(Bool.self) { self = .bool(b); return }
            if let s = try? container.decode(String.self) { self = .string(s); return }
            if let i = try? container.decode(Int64.self) { self = .number(JSONNumber(i)); return }
            if let u = try? container.decode(UInt64.self) { self = .number(JSONNumber(u)); return }
            if let d = try? container.decode(Double.self), let n = JSONNumber(d) { self = .number(n); return }
        }
        if let keyed = try? decoder.container(keyedBy: JSONCodingKey.self) {
            var object = JSONObject()
            for key in keyed.allKeys {
                object.members.append(.init(key: key.stringValue, value: try keyed.decode(JSONValue.self, forKey: key)))
            }
            self = .object(object)
            return
        }
        if var unkeyed = try? decoder.unkeyedContainer() {
            var elements: [JSONValue] = []
            while !unkeyed.isAtEnd { elements.append(try unkeyed.decode(JSONValue.self)) }
            self = .array(elements)
            return
        }
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected a JSON value"))
    }

    public func encode(to encoder: any Encoder) throws {
        if let impl = encoder as? JSONEncoderImpl {
            impl.writeJSONValue(self)
            return
        }
        switch self {
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .number(let n):
            try n.encode(to: encoder)
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .array(let elements):
            var c = encoder.unkeyedContainer()
            for e in elements { try c.encode(e) }
        case .object(let object):
            var c = encoder.container(keyedBy: JSONCodingKey.self)
            for m in object.members { try c.encode(m.value, forKey: JSONCodingKey(stringValue: m.key)) }
        }
    }
}

// MARK: - Building from the tape

extension JSONDocument {
    /// Builds the value at tape index `root`, iteratively (depth is bounded
    /// by `maxDepth`, but the native stack of a worker thread is small).
    func buildValue(at root: UInt32) -> JSONValue {
        struct Frame {
            var isObject: Bool
            var end: UInt32
            var elements: [JSONValue] = []
            var members: [JSONObject.Member] = []
            var key: String = ""
        }
        var stack: [Frame] = []
        var i = root
        while true {
            // At a value (for objects, `i` is at a key when a member starts).
            if let top = stack.last, top.isObject, i < top.end {
                stack[stack.count - 1].key = decodeString(at: i)
                i += 1
            }
            var value: JSONValue
            if let top = stack.last, i >= top.end {
                // Close the innermost container.
                let frame = stack.removeLast()
                value = frame.isObject ? .object(JSONObject(frame.members)) : .array(frame.elements)
            } else {
                let e = entries[Int(i)]
                switch e.kind {
                case .null: value = .null
                case .boolTrue: value = .bool(true)
                case .boolFalse: value = .bool(false)
                case .number: value = .number(JSONNumber(unchecked: String(decoding: span(of: i), as: UTF8.self)))
                case .string: value = .string(decodeString(at: i))
                case .array, .object:
                    var frame = Frame(isObject: e.kind == .object, end: e.next)
                    if frame.isObject { frame.members.reserveCapacity(4) }
                    stack.append(frame)
                    i += 1
                    continue
                }
                i += 1
            }
            // Attach the finished value to its parent, or return it.
            guard !stack.isEmpty else { return value }
            let last = stack.count - 1
            if stack[last].isObject {
                stack[last].members.append(.init(key: stack[last].key, value: value))
            } else {
                stack[last].elements.append(value)
            }
        }
    }
}
