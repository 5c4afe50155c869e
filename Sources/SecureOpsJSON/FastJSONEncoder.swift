/// Encodes `Encodable` values to compact JSON bytes through `JSONWriter`.
///
/// Object keys come out in the order the type encodes them; `encodeNil`
/// writes `null`; a value that encodes nothing becomes `{}`. Infinite and
/// NaN doubles are an `EncodingError`. `RawJSON` is written verbatim and
/// `JSONValue` keeps its member order and number text.
///
/// Containers are streamed: a nested container is closed when its parent
/// writes its next member or when the value that opened it is done. Writing
/// into a container after a sibling container was opened later is not
/// supported (no standard-library or synthesized type does that).
public struct FastJSONEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        try encode(value, into: &writer)
        return writer.bytes
    }

    /// Appends the encoding of `value` to `writer` (after a comma if the
    /// writer needs one). On error the writer is left as it was.
    public func encode<T: Encodable>(_ value: T, into writer: inout JSONWriter) throws {
        let impl = JSONEncoderImpl()
        let start = writer.bytes.count
        let needsComma = writer.needsComma
        swap(&impl.writer, &writer)
        defer { swap(&impl.writer, &writer) }
        do {
            try impl.encodeValue(value)
            impl.close(to: 0)
        } catch {
            impl.writer.bytes.removeSubrange(start...)
            impl.writer.needsComma = needsComma
            throw error
        }
    }
}

/// The `Encoder` behind `FastJSONEncoder`.
///
/// `open` is the stack of containers written so far and not yet closed
/// (`true` for an object). `base` is the stack height at which the value
/// being encoded starts: a container it asks for lives at `open[base]`.
final class JSONEncoderImpl: Encoder {
    var writer = JSONWriter(capacity: 0)
    var open: [Bool] = []
    var base = 0
    var path: [any CodingKey] = []

    var codingPath: [any CodingKey] { path }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// Closes open containers until `depth` remain.
    func close(to depth: Int) {
        while open.count > depth {
            if open.removeLast() { writer.endObject() } else { writer.endArray() }
        }
    }

    // MARK: Containers for the value at `base`

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(keyedContainer(at: base, type))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        unkeyedContainer(at: base)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        JSONSingleValueEncoder(impl: self, pathDepth: path.count)
    }

    func keyedContainer<Key: CodingKey>(at level: Int, _ type: Key.Type) -> JSONKeyedEncoder<Key> {
        if open.count > level {
            // Asked again for the container this value already opened.
            precondition(open[level], "a value asked for a keyed container after opening an unkeyed one")
            close(to: level + 1)
        } else {
            writer.beginObject()
            open.append(true)
        }
        return JSONKeyedEncoder(impl: self, depth: level + 1, pathDepth: path.count)
    }

    func unkeyedContainer(at level: Int) -> JSONUnkeyedEncoder {
        if open.count > level {
            precondition(!open[level], "a value asked for an unkeyed container after opening a keyed one")
            close(to: level + 1)
        } else {
            writer.beginArray()
            open.append(false)
        }
        return JSONUnkeyedEncoder(impl: self, depth: level + 1, pathDepth: path.count)
    }

    // MARK: Values

    func encodeValue<T: Encodable>(_ value: T) throws {
        switch value {
        case let v as String: writer.string(v)
        case let v as Bool: writer.bool(v)
        case let v as Int: writer.int(v)
        case let v as Double: try writeDouble(v)
        case let v as RawJSON: writer.raw(v)
        case let v as JSONValue: writer.value(v)
        case let v as Int64: writer.int(Int(v))
        case let v as UInt64: writer.uint(v)
        default:
            let savedBase = base
            base = open.count
            let before = writer.bytes.count
            defer { base = savedBase }
            try value.encode(to: self)
            close(to: base)
            if writer.bytes.count == before {
                // Nothing written: an empty keyed value, as Foundation does.
                writer.beginObject()
                writer.endObject()
            }
        }
    }

    func writeDouble(_ v: Double) throws {
        guard v.isFinite else {
            throw EncodingError.invalidValue(v, .init(codingPath: path, debugDescription: "\(v) cannot be written as JSON"))
        }
        writer.double(v)
    }

    func writeFloat(_ v: Float) throws {
        guard v.isFinite else {
            throw EncodingError.invalidValue(v, .init(codingPath: path, debugDescription: "\(v) cannot be written as JSON"))
        }
        writer.separate()
        var text = v.description
        text.withUTF8 { writer.bytes.append(contentsOf: $0) }
        writer.needsComma = true
    }

    func writeNumber(_ n: JSONNumber) { writer.number(n) }
    func writeJSONValue(_ v: JSONValue) { writer.value(v) }
    func writeRaw(_ raw: RawJSON) { writer.raw(raw) }

    func writeInteger<I: FixedWidthInteger>(_ v: I) {
        if I.isSigned {
            writer.int(Int(truncatingIfNeeded: v))
        } else {
            writer.uint(UInt64(truncatingIfNeeded: v))
        }
    }

    /// Encodes `value` as the element below `key` in the path.
    func encodeNested<T: Encodable>(_ value: T, key: any CodingKey, pathDepth: Int) throws {
        if path.count > pathDepth { path.removeSubrange(pathDepth...) }
        path.append(key)
        defer { path.removeLast() }
        try encodeValue(value)
    }
}

// MARK: - Keyed

struct JSONKeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let impl: JSONEncoderImpl
    let depth: Int
    let pathDepth: Int

    var codingPath: [any CodingKey] { Array(impl.path.prefix(pathDepth)) }

    private func writeKey(_ key: Key) {
        impl.close(to: depth)
        impl.writer.key(key.stringValue)
    }

    mutating func encodeNil(forKey key: Key) throws {
        writeKey(key)
        impl.writer.null()
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws { writeKey(key); impl.writer.bool(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { writeKey(key); impl.writer.string(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        writeKey(key)
        try impl.encodeNested(value, key: key, pathDepth: pathDepth)
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        writeKey(key)
        guard value.isFinite else { return try impl.encodeNested(Double(value), key: key, pathDepth: pathDepth) }
        try impl.writeFloat(value)
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { writeKey(key); impl.writer.int(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { writeKey(key); impl.writeInteger(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        writeKey(key)
        try impl.encodeNested(value, key: key, pathDepth: pathDepth)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        writeKey(key)
        return KeyedEncodingContainer(impl.keyedContainer(at: depth, keyType))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        writeKey(key)
        return impl.unkeyedContainer(at: depth)
    }

    mutating func superEncoder() -> any Encoder {
        impl.close(to: depth)
        impl.writer.key("super")
        return JSONSubEncoder(impl: impl, level: depth, path: codingPath + [JSONCodingKey.super])
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        writeKey(key)
        return JSONSubEncoder(impl: impl, level: depth, path: codingPath + [key])
    }
}

// MARK: - Unkeyed

struct JSONUnkeyedEncoder: UnkeyedEncodingContainer {
    let impl: JSONEncoderImpl
    let depth: Int
    let pathDepth: Int
    private(set) var count = 0

    init(impl: JSONEncoderImpl, depth: Int, pathDepth: Int) {
        self.impl = impl
        self.depth = depth
        self.pathDepth = pathDepth
    }

    var codingPath: [any CodingKey] { Array(impl.path.prefix(pathDepth)) }

    private mutating func next() -> JSONCodingKey {
        impl.close(to: depth)
        defer { count += 1 }
        return JSONCodingKey(index: count)
    }

    mutating func encodeNil() throws { _ = next(); impl.writer.null() }
    mutating func encode(_ value: Bool) throws { _ = next(); impl.writer.bool(value) }
    mutating func encode(_ value: String) throws { _ = next(); impl.writer.string(value) }
    mutating func encode(_ value: Int) throws { _ = next(); impl.writer.int(value) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let key = next()
        try impl.encodeNested(value, key: key, pathDepth: pathDepth)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        _ = next()
        return KeyedEncodingContainer(impl.keyedContainer(at: depth, keyType))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        _ = next()
        return impl.unkeyedContainer(at: depth)
    }

    mutating func superEncoder() -> any Encoder {
        let key = next()
        return JSONSubEncoder(impl: impl, level: depth, path: codingPath + [key])
    }
}

// MARK: - Single value

struct JSONSingleValueEncoder: SingleValueEncodingContainer {
    let impl: JSONEncoderImpl
    let pathDepth: Int

    var codingPath: [any CodingKey] { Array(impl.path.prefix(pathDepth)) }

    mutating func encodeNil() throws { impl.writer.null() }
    mutating func encode(_ value: Bool) throws { impl.writer.bool(value) }
    mutating func encode(_ value: String) throws { impl.writer.string(value) }
    mutating func encode(_ value: Double) throws { try impl.writeDouble(value) }
    mutating func encode(_ value: Float) throws { try impl.writeFloat(value) }
    mutating func encode(_ value: Int) throws { impl.writer.int(value) }
    mutating func encode(_ value: Int8) throws { impl.writeInteger(value) }
    mutating func encode(_ value: Int16) throws { impl.writeInteger(value) }
    mutating func encode(_ value: Int32) throws { impl.writeInteger(value) }
    mutating func encode(_ value: Int64) throws { impl.writeInteger(value) }
    mutating func encode(_ value: UInt) throws { impl.writeInteger(value) }
    mutating func encode(_ value: UInt8) throws { impl.writeInteger(value) }
    mutating func encode(_ value: UInt16) throws { impl.writeInteger(value) }
    mutating func encode(_ value: UInt32) throws { impl.writeInteger(value) }
    mutating func encode(_ value: UInt64) throws { impl.writeInteger(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try impl.encodeValue(value) }
}

// MARK: - superEncoder

/// The encoder handed out by `superEncoder()`: its containers open at the
/// position of the key just written.
final class JSONSubEncoder: Encoder {
    let impl: JSONEncoderImpl
    let level: Int
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(impl: JSONEncoderImpl, level: Int, path: [any CodingKey]) {
        self.impl = impl
        self.level = level
        codingPath = path
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(impl.keyedContainer(at: level, type))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer { impl.unkeyedContainer(at: level) }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        JSONSingleValueEncoder(impl: impl, pathDepth: impl.path.count)
    }
}
