/// Decodes `Decodable` values straight from JSON bytes.
///
/// The whole input is validated first (strict RFC 8259, UTF-8, depth limit),
/// including members the type never asks for; then the type reads what it
/// needs from a flat index of the document. Keys are matched by comparing
/// bytes with each `CodingKey`'s UTF-8, strings without escapes are made
/// straight from the input bytes, and every scratch buffer is kept for the
/// next call, so a steady stream of frames does not allocate beyond the
/// values the caller keeps.
///
/// Not `Sendable`: keep one per thread. A decode re-entered from inside a
/// type's `init(from:)` is served by a temporary decoder.
///
/// Every failure is a `JSONDecodingError`.
public final class FastJSONDecoder {
    let impl: JSONDecoderImpl
    /// The deepest nesting of arrays and objects accepted.
    public let maxDepth: Int

    public init(maxDepth: Int = 512) {
        self.maxDepth = maxDepth
        impl = JSONDecoderImpl(document: JSONDocument(maxDepth: maxDepth))
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        if impl.busy {
            return try FastJSONDecoder(maxDepth: maxDepth).decode(type, from: bytes)
        }
        return try impl.decodeTopLevel(type, from: bytes)
    }

    /// The same for a `FastJSONDecodable` type, compiled into the caller:
    /// called with a concrete type, nothing generic is left at run time
    /// (no metadata lookups, no value-witness copies of the result).
    @inlinable
    public func decode<T: FastJSONDecodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        if let known = T.decodeKnownFrame(bytes) { return known }
        if isBusy { return try FastJSONDecoder(maxDepth: maxDepth).decode(type, from: bytes) }
        let root = try beginTopLevel(bytes)
        defer { endTopLevel() }
        do {
            return try T(fastJSON: root)
        } catch {
            throw topLevelError(error)
        }
    }

    @usableFromInline
    var isBusy: Bool { impl.busy }

    /// Parses and validates `bytes`; the root value, to decode from.
    @usableFromInline
    func beginTopLevel(_ bytes: UnsafeRawBufferPointer) throws -> FastJSONValueDecoder {
        impl.busy = true
        do {
            try impl.document.parse(bytes)
        } catch {
            endTopLevel()
            throw topLevelError(error)
        }
        impl.cursor = 0
        impl.cursorDepth = 0
        impl.resetPath()
        return FastJSONValueDecoder(impl: impl, value: 0, depth: 0)
    }

    @usableFromInline
    func endTopLevel() {
        impl.busy = false
        impl.document.detach()
    }

    /// Every failure as the `JSONDecodingError` a person reads.
    @usableFromInline
    func topLevelError(_ error: any Error) -> JSONDecodingError {
        switch error {
        case let error as JSONDecodingError: error
        case let error as DecodingError: JSONDecodingError(error)
        default: JSONDecodingError(offset: nil, codingPath: "", reason: String(describing: error))
        }
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    public func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        var text = text
        return try text.withUTF8 { try decode(type, from: UnsafeRawBufferPointer($0)) }
    }
}

// MARK: - The Decoder

/// The `Decoder` handed to `init(from:)`. One instance serves a whole decode:
/// decoding a nested value moves `cursor` and restores it afterwards, so no
/// decoder object is allocated per value.
///
/// Coding paths: the path stack holds one element per level (`>= 0`: the
/// tape index of a key; `< 0`: `-(arrayIndex + 1)`). A container at depth `d`
/// owns elements `0..<d`; a push truncates to the pusher's depth first. Keys
/// are turned into text only when a path is asked for (errors).
final class JSONDecoderImpl: Decoder {
    let document: JSONDocument
    @exclusivity(unchecked) var cursor: UInt32 = 0
    @exclusivity(unchecked) var cursorDepth: Int = 0
    /// The path stack, a raw buffer (no exclusivity checks on the hot path).
    @exclusivity(unchecked) private var pathBuffer: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) private var pathCapacity: Int
    @exclusivity(unchecked) private(set) var pathCount: Int

    init(document: JSONDocument, cursor: UInt32 = 0, path: [Int] = []) {
        self.document = document
        self.cursor = cursor
        pathCapacity = max(16, path.count * 2)
        pathBuffer = .allocate(capacity: pathCapacity)
        pathCount = path.count
        for (i, element) in path.enumerated() { pathBuffer[i] = element }
        cursorDepth = path.count
    }

    deinit {
        pathBuffer.deallocate()
        fastTypes.deallocate()
    }

    /// Set while a top-level decode runs (a re-entrant call gets a fresh decoder).
    @exclusivity(unchecked) var busy = false

    /// Types already checked for `FastJSONDecodable` (see `fastDecodableType`).
    private let fastTypes = FastTypeCache()

    /// Validates `bytes`, then decodes a `T` from the root value. Every error
    /// becomes a `JSONDecodingError`.
    func decodeTopLevel<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        let fast = _isConcrete(T.self) ? T.self as? any FastJSONDecodable.Type : fastDecodableType(T.self)
        if let fast, let known = knownFrame(fast, bytes, as: T.self) { return known }
        busy = true
        defer {
            busy = false
            document.detach()
        }
        try document.parse(bytes)
        cursor = 0
        cursorDepth = 0
        resetPath()
        do {
            return try decodeCurrent(T.self)
        } catch let error as DecodingError {
            throw JSONDecodingError(error)
        } catch let error as JSONDecodingError {
            throw error
        } catch {
            throw JSONDecodingError(offset: nil, codingPath: "", reason: String(describing: error))
        }
    }

    func resetPath() {
        pathCount = 0
    }

    /// The first `depth` path elements.
    func pathPrefix(_ depth: Int) -> [Int] {
        Array(UnsafeBufferPointer(start: pathBuffer, count: min(depth, pathCount)))
    }

    var codingPath: [any CodingKey] { codingPath(depth: cursorDepth) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func codingPath(depth: Int) -> [any CodingKey] {
        pathPrefix(depth).map { element -> any CodingKey in
            element >= 0
                ? JSONCodingKey(stringValue: document.decodeString(at: UInt32(element)))
                : JSONCodingKey(index: -element - 1)
        }
    }

    func codingPath(depth: Int, plus key: any CodingKey) -> [any CodingKey] {
        codingPath(depth: depth) + [key]
    }

    @inline(__always)
    func push(_ element: Int, depth: Int) {
        // A container's depth is the path length when it was made, and pushes
        // only truncate, so depth <= pathCount; min() keeps that true anyway.
        let d = min(depth, pathCount)
        if d == pathCapacity { growPath() }
        pathBuffer[d] = element
        pathCount = d + 1
    }

    @inline(never)
    private func growPath() {
        let new = UnsafeMutablePointer<Int>.allocate(capacity: pathCapacity * 2)
        new.moveInitialize(from: pathBuffer, count: pathCount)
        pathBuffer.deallocate()
        pathBuffer = new
        pathCapacity *= 2
    }

    // MARK: Containers

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(try keyedContainer(keyedBy: type))
    }

    /// The keyed container without the type-erasing box (no allocation).
    @inline(__always)
    func keyedContainer<Key: CodingKey>(keyedBy type: Key.Type) throws -> FastJSONKeyedContainer<Key> {
        guard document[cursor].kind == .object else {
            throw mismatch([String: Any].self, "a JSON object", at: cursor, path: codingPath)
        }
        return try FastJSONKeyedContainer(decoder: self, object: cursor, depth: cursorDepth)
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard document[cursor].kind == .array else {
            throw mismatch([Any].self, "a JSON array", at: cursor, path: codingPath)
        }
        return JSONUnkeyedContainer(decoder: self, array: cursor, depth: cursorDepth)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        FastJSONSingleValueContainer(decoder: self, value: cursor, depth: UInt32(truncatingIfNeeded: cursorDepth))
    }

    // MARK: Decoding a value

    /// Decodes the value at tape index `value`, one level below `depth`,
    /// reached through path `element`.
    @inline(__always)
    func decodeValue<T: Decodable>(_ type: T.Type, at value: UInt32, depth: Int, element: Int) throws -> T {
        push(element, depth: depth)
        let savedCursor = cursor, savedDepth = cursorDepth
        cursor = value
        cursorDepth = depth + 1
        defer {
            cursor = savedCursor
            cursorDepth = savedDepth
        }
        return try decodeCurrent(type)
    }

    /// Decodes the value at `cursor`. Scalars and the JSON types of this
    /// module are read directly, `FastJSONDecodable` types get concrete
    /// containers, everything else goes through `init(from:)`.
    func decodeCurrent<T: Decodable>(_ type: T.Type) throws -> T {
        let v = cursor
        if T.self == String.self {
            guard let s = readString(v) else { throw mismatch(String.self, "a string", at: v, path: codingPath) }
            return unsafeBitCast(s, to: T.self)
        }
        if T.self == RawJSON.self {
            return unsafeBitCast(RawJSON(unchecked: Array(document.span(of: v))), to: T.self)
        }
        if T.self == JSONValue.self {
            return unsafeBitCast(document.buildValue(at: v), to: T.self)
        }
        if T.self == Bool.self {
            guard let b = readBool(v) else { throw mismatch(Bool.self, "a boolean", at: v, path: codingPath) }
            return unsafeBitCast(b, to: T.self)
        }
        if T.self == Int.self { return unsafeBitCast(try readInteger(v, Int.self, path: codingPath), to: T.self) }
        if T.self == UInt64.self { return unsafeBitCast(try readInteger(v, UInt64.self, path: codingPath), to: T.self) }
        if T.self == Int64.self { return unsafeBitCast(try readInteger(v, Int64.self, path: codingPath), to: T.self) }
        if T.self == Double.self { return unsafeBitCast(try readDouble(v, path: codingPath), to: T.self) }
        // Types that adopt FastJSONDecodable get concrete containers.
        if _isConcrete(T.self) {
            // Specialized code (T known at compile time, as for nested
            // fields): the optimizer folds this cast and `decodeFast` into a
            // direct call of T's initializer.
            if let fast = T.self as? any FastJSONDecodable.Type {
                return try decodeFast(fast, as: T.self)
            }
        } else if let fast = fastDecodableType(T.self) {
            // Unspecialized code (a top-level decode called from another
            // module): a remembered answer instead of the runtime's lookup.
            return try decodeFast(fast, as: T.self)
        }
        return try T(from: self)
    }

    // MARK: FastJSONDecodable

    /// Whether `T` adopts `FastJSONDecodable`, remembered per type: the
    /// runtime's conformance lookup costs about as much as the rest of
    /// decoding a `ping`, and a server decodes the same few types forever.
    @inline(__always)
    func fastDecodableType<T>(_ type: T.Type) -> (any FastJSONDecodable.Type)? {
        let id = ObjectIdentifier(type)
        if let known = fastTypes.lookup(id) { return known }
        let found = type as? any FastJSONDecodable.Type
        fastTypes.remember(id, found)
        return found
    }

    /// `F.decodeKnownFrame`, as `T` (which is `F`).
    @inline(__always)
    func knownFrame<F: FastJSONDecodable, T>(_ fast: F.Type, _ bytes: UnsafeRawBufferPointer, as type: T.Type) -> T? {
        guard let value = F.decodeKnownFrame(bytes) else { return nil }
        return unsafeBitCast(value, to: T.self)
    }

    /// Calls `F.init(fastJSON:)` for the value at `cursor`; `T` is `F`
    /// (the caller found `F` as `T`'s conformance), so the cast is exact.
    func decodeFast<F: FastJSONDecodable, T>(_ fast: F.Type, as type: T.Type) throws -> T {
        let value = try F(fastJSON: FastJSONValueDecoder(impl: self, value: cursor, depth: cursorDepth))
        return unsafeBitCast(value, to: T.self)
    }

    // MARK: Scalars

    @inline(__always)
    func readBool(_ v: UInt32) -> Bool? {
        switch document[v].kind {
        case .boolTrue: true
        case .boolFalse: false
        default: nil
        }
    }

    @inline(__always)
    func readString(_ v: UInt32) -> String? {
        guard document[v].kind == .string else { return nil }
        return document.decodeString(at: v)
    }

    /// An integer of type `I`, exactly: `1e2` is 100, `1.5` and out-of-range
    /// values are errors.
    @inline(__always)
    func readInteger<I: FixedWidthInteger>(_ v: UInt32, _ type: I.Type, path: @autoclosure () -> [any CodingKey]) throws -> I {
        if let x = document.integer(at: v, as: I.self) { return x }
        throw integerError(I.self, at: v, path: path())
    }

    func readDouble(_ v: UInt32, path: @autoclosure () -> [any CodingKey]) throws -> Double {
        if let x = document.double(at: v) { return x }
        if document[v].kind == .number {
            throw DecodingError.dataCorrupted(.init(
                codingPath: path(),
                debugDescription: "expected a number within the range of a 64-bit float, found \(numberText(v))"))
        }
        throw mismatch(Double.self, "a number", at: v, path: path())
    }

    func readFloat(_ v: UInt32, path: @autoclosure () -> [any CodingKey]) throws -> Float {
        let d = try readDouble(v, path: path())
        let f = Float(d)
        guard f.isFinite else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: path(),
                debugDescription: "expected a number within the range of a 32-bit float, found \(numberText(v))"))
        }
        return f
    }

    // MARK: Errors (built only when thrown)

    func numberText(_ v: UInt32) -> String {
        let text = String(decoding: document.span(of: v), as: UTF8.self)
        return text.utf8.count > 40 ? String(text.prefix(40)) + "…" : text
    }

    func mismatch(_ type: Any.Type, _ expected: String, at v: UInt32, path: [any CodingKey]) -> DecodingError {
        let kind = document[v].kind
        let context = DecodingError.Context(codingPath: path, debugDescription: "expected \(expected), found \(kind.phrase)")
        return kind == .null ? .valueNotFound(type, context) : .typeMismatch(type, context)
    }

    func integerError<I: FixedWidthInteger>(_ type: I.Type, at v: UInt32, path: [any CodingKey]) -> DecodingError {
        guard document[v].kind == .number else { return mismatch(type, "an integer", at: v, path: path) }
        return .dataCorrupted(.init(codingPath: path, debugDescription: "expected an integer between \(I.min) and \(I.max), found \(numberText(v))"))
    }
}

/// A few remembered answers to "does this type adopt FastJSONDecodable?",
/// in storage allocated once and reached through `let` pointers (no array,
/// no `var` on a class: no exclusivity or bounds checks on the hot path).
/// When full, the oldest entry makes room.
struct FastTypeCache {
    struct Entry {
        var id: ObjectIdentifier
        var type: (any FastJSONDecodable.Type)?
    }

    static let capacity = 8
    private let entries = UnsafeMutablePointer<Entry>.allocate(capacity: capacity)
    /// [0]: entries in use, [1]: the next one to replace when full.
    private let counters: UnsafeMutablePointer<Int> = {
        let counters = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        counters.initialize(repeating: 0, count: 2)
        return counters
    }()

    @inline(__always)
    func lookup(_ id: ObjectIdentifier) -> (any FastJSONDecodable.Type)?? {
        let count = counters[0]
        var i = 0
        while i < count {
            if entries[i].id == id { return .some(entries[i].type) }
            i += 1
        }
        return nil
    }

    func remember(_ id: ObjectIdentifier, _ type: (any FastJSONDecodable.Type)?) {
        let entry = Entry(id: id, type: type)
        if counters[0] < Self.capacity {
            (entries + counters[0]).initialize(to: entry)
            counters[0] += 1
        } else {
            entries[counters[1]] = entry
            counters[1] = (counters[1] + 1) % Self.capacity
        }
    }

    func deallocate() {
        entries.deinitialize(count: counters[0])
        entries.deallocate()
        counters.deallocate()
    }
}

// MARK: - Keyed container

/// The keyed container `FastJSONDecoder` hands out: a concrete struct, so
/// code that holds it (``FastJSONDecodable``) calls its methods directly.
public struct FastJSONKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: JSONDecoderImpl
    let object: UInt32
    let depth: Int

    /// The one way to a keyed container, so the rule holds for every
    /// typed decoding: an object a type reads fields from may not repeat a
    /// key. A frame that reads as `{"type":"ping"}` to whatever looks at it
    /// first must not act as the `kill` its second `type` says. (Free-form
    /// values, `JSONValue` and `RawJSON`, are read from the tape directly
    /// and keep RFC 8259's latitude.)
    @inline(__always)
    init(decoder: JSONDecoderImpl, object: UInt32, depth: Int) throws {
        if let repeated = decoder.document.firstRepeatedKey(in: object) {
            throw Self.duplicate(decoder, key: repeated, depth: depth)
        }
        self.decoder = decoder
        self.object = object
        self.depth = depth
    }

    @inline(never)
    private static func duplicate(_ decoder: JSONDecoderImpl, key: UInt32, depth: Int) -> DecodingError {
        let name = decoder.document.decodeString(at: key)
        return .dataCorrupted(.init(
            codingPath: decoder.codingPath(depth: depth) + [JSONCodingKey(stringValue: name)],
            debugDescription: "duplicate key \(jsonQuoted(name)): a key may appear only once in an object"))
    }

    public var codingPath: [any CodingKey] { decoder.codingPath(depth: depth) }

    public var allKeys: [Key] {
        let doc = decoder.document
        var keys: [Key] = []
        var seen = Set<String>()
        var i = object + 1
        let end = doc[object].next
        while i < end {
            let name = doc.decodeString(at: i)
            if seen.insert(name).inserted, let key = Key(stringValue: name) { keys.append(key) }
            i = doc[i + 1].next
        }
        return keys
    }

    /// The tape index of the value of `key`, or nil.
    @inline(__always)
    func lookup(_ key: Key) -> UInt32? {
        var name = key.stringValue
        return name.withUTF8 { decoder.document.member(of: object, $0) }
    }

    @inline(__always)
    func require(_ key: Key) throws -> UInt32 {
        guard let v = lookup(key) else { throw missing(key) }
        return v
    }

    func missing(_ key: Key) -> DecodingError {
        .keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing field \(jsonQuoted(key.stringValue))"))
    }

    func path(_ key: Key) -> [any CodingKey] { decoder.codingPath(depth: depth, plus: key) }

    @inline(__always)
    func isNull(_ v: UInt32) -> Bool { decoder.document[v].kind == .null }

    public func contains(_ key: Key) -> Bool { lookup(key) != nil }

    public func decodeNil(forKey key: Key) throws -> Bool { isNull(try require(key)) }

    // Reading one value, given its tape index.

    @inline(__always)
    private func bool(_ v: UInt32, _ key: Key) throws -> Bool {
        guard let b = decoder.readBool(v) else { throw decoder.mismatch(Bool.self, "a boolean", at: v, path: path(key)) }
        return b
    }

    @inline(__always)
    private func string(_ v: UInt32, _ key: Key) throws -> String {
        guard let s = decoder.readString(v) else { throw decoder.mismatch(String.self, "a string", at: v, path: path(key)) }
        return s
    }

    @inline(__always)
    private func integer<I: FixedWidthInteger>(_ v: UInt32, _ key: Key) throws -> I {
        try decoder.readInteger(v, I.self, path: path(key))
    }

    @inline(__always)
    private func value<T: Decodable>(_ v: UInt32, _ key: Key) throws -> T {
        try decoder.decodeValue(T.self, at: v, depth: depth, element: Int(v - 1))
    }

    public func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try bool(try require(key), key) }
    public func decode(_ type: String.Type, forKey key: Key) throws -> String { try string(try require(key), key) }
    public func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decoder.readDouble(try require(key), path: path(key)) }
    public func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decoder.readFloat(try require(key), path: path(key)) }
    public func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(try require(key), key) }
    public func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(try require(key), key) }
    public func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(try require(key), key) }
    public func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(try require(key), key) }
    public func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(try require(key), key) }
    public func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(try require(key), key) }
    public func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(try require(key), key) }
    public func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(try require(key), key) }
    public func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(try require(key), key) }
    public func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(try require(key), key) }
    public func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try value(try require(key), key) }

    // One lookup for "present and not null" (the default implementations do three).

    @inline(__always)
    private func present(_ key: Key) -> UInt32? {
        guard let v = lookup(key), !isNull(v) else { return nil }
        return v
    }

    public func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        guard let v = present(key) else { return nil }
        return try bool(v, key)
    }
    public func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        guard let v = present(key) else { return nil }
        return try string(v, key)
    }
    public func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        guard let v = present(key) else { return nil }
        return try decoder.readDouble(v, path: path(key))
    }
    public func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? {
        guard let v = present(key) else { return nil }
        return try decoder.readFloat(v, path: path(key))
    }
    public func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try present(key).map { try integer($0, key) } }
    public func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let v = present(key) else { return nil }
        // Spelled out: `value(v, key)` would infer `T?` and go through
        // Optional's init(from:).
        let decoded: T = try value(v, key)
        return decoded
    }

    // Nesting.

    public func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        let v = try require(key)
        guard decoder.document[v].kind == .object else {
            throw decoder.mismatch([String: Any].self, "a JSON object", at: v, path: path(key))
        }
        decoder.push(Int(v - 1), depth: depth)
        return KeyedDecodingContainer(try FastJSONKeyedContainer<NestedKey>(decoder: decoder, object: v, depth: depth + 1))
    }

    public func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        let v = try require(key)
        guard decoder.document[v].kind == .array else {
            throw decoder.mismatch([Any].self, "a JSON array", at: v, path: path(key))
        }
        decoder.push(Int(v - 1), depth: depth)
        return JSONUnkeyedContainer(decoder: decoder, array: v, depth: depth + 1)
    }

    public func superDecoder() throws -> any Decoder {
        let superKey: [UInt8] = Array("super".utf8)
        guard let v = superKey.withUnsafeBufferPointer({ decoder.document.member(of: object, $0) }) else {
            throw DecodingError.keyNotFound(JSONCodingKey.super, .init(codingPath: codingPath, debugDescription: "missing field \"super\""))
        }
        return subDecoder(v)
    }

    public func superDecoder(forKey key: Key) throws -> any Decoder { subDecoder(try require(key)) }

    private func subDecoder(_ v: UInt32) -> any Decoder {
        var path = decoder.pathPrefix(depth)
        path.append(Int(v - 1))
        return JSONDecoderImpl(document: decoder.document, cursor: v, path: path)
    }
}

// MARK: - Unkeyed container

/// Fits an existential's inline buffer (three words), so handing it out as
/// `any UnkeyedDecodingContainer` does not allocate.
struct JSONUnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: JSONDecoderImpl
    let array: UInt32
    private var nextEntry: UInt32
    private let depth32: UInt32
    private var index32: UInt32

    init(decoder: JSONDecoderImpl, array: UInt32, depth: Int) {
        self.decoder = decoder
        self.array = array
        nextEntry = array + 1
        depth32 = UInt32(truncatingIfNeeded: depth)
        index32 = 0
    }

    var depth: Int { Int(depth32) }
    var currentIndex: Int { Int(index32) }
    var codingPath: [any CodingKey] { decoder.codingPath(depth: depth) }

    var count: Int? {
        let doc = decoder.document
        var n = 0
        var i = array + 1
        let end = doc[array].next
        while i < end {
            n += 1
            i = doc[i].next
        }
        return n
    }

    var isAtEnd: Bool { nextEntry >= decoder.document[array].next }

    private var elementPath: [any CodingKey] {
        decoder.codingPath(depth: depth, plus: JSONCodingKey(index: currentIndex))
    }

    /// The next element's tape index; throws at the end of the array.
    private func peek(_ type: Any.Type) throws -> UInt32 {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(
                codingPath: elementPath,
                debugDescription: "expected another array element, found the end of the array (\(currentIndex) elements)"))
        }
        return nextEntry
    }

    private mutating func advance() {
        nextEntry = decoder.document[nextEntry].next
        index32 += 1
    }

    mutating func decodeNil() throws -> Bool {
        let v = try peek(Never.self)
        guard decoder.document[v].kind == .null else { return false }
        advance()
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool {
        let v = try peek(type)
        guard let b = decoder.readBool(v) else { throw decoder.mismatch(type, "a boolean", at: v, path: elementPath) }
        advance()
        return b
    }

    mutating func decode(_ type: String.Type) throws -> String {
        let v = try peek(type)
        guard let s = decoder.readString(v) else { throw decoder.mismatch(type, "a string", at: v, path: elementPath) }
        advance()
        return s
    }

    mutating func decode(_ type: Double.Type) throws -> Double {
        let v = try peek(type)
        let x = try decoder.readDouble(v, path: elementPath)
        advance()
        return x
    }

    mutating func decode(_ type: Float.Type) throws -> Float {
        let v = try peek(type)
        let x = try decoder.readFloat(v, path: elementPath)
        advance()
        return x
    }

    private mutating func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        let v = try peek(type)
        let x = try decoder.readInteger(v, I.self, path: elementPath)
        advance()
        return x
    }

    mutating func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let v = try peek(type)
        let x = try decoder.decodeValue(type, at: v, depth: depth, element: -currentIndex - 1)
        advance()
        return x
    }

    mutating func decodeIfPresent<T: Decodable>(_ type: T.Type) throws -> T? {
        if try decodeNil() { return nil }
        return try decode(type)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let v = try peek([String: Any].self)
        guard decoder.document[v].kind == .object else {
            throw decoder.mismatch([String: Any].self, "a JSON object", at: v, path: elementPath)
        }
        decoder.push(-currentIndex - 1, depth: depth)
        advance()
        return KeyedDecodingContainer(try FastJSONKeyedContainer<NestedKey>(decoder: decoder, object: v, depth: depth + 1))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let v = try peek([Any].self)
        guard decoder.document[v].kind == .array else {
            throw decoder.mismatch([Any].self, "a JSON array", at: v, path: elementPath)
        }
        decoder.push(-currentIndex - 1, depth: depth)
        advance()
        return JSONUnkeyedContainer(decoder: decoder, array: v, depth: depth + 1)
    }

    mutating func superDecoder() throws -> any Decoder {
        let v = try peek((any Decoder).self)
        var path = decoder.pathPrefix(depth)
        path.append(-currentIndex - 1)
        advance()
        return JSONDecoderImpl(document: decoder.document, cursor: v, path: path)
    }
}

// MARK: - Single value container

/// The single-value container `FastJSONDecoder` hands out (see
/// ``FastJSONValueDecoder/singleValueContainer()``).
public struct FastJSONSingleValueContainer: SingleValueDecodingContainer {
    let decoder: JSONDecoderImpl
    let value: UInt32
    let depth: UInt32

    public var codingPath: [any CodingKey] { decoder.codingPath(depth: Int(depth)) }

    public func decodeNil() -> Bool { decoder.document[value].kind == .null }

    public func decode(_ type: Bool.Type) throws -> Bool {
        guard let b = decoder.readBool(value) else { throw decoder.mismatch(type, "a boolean", at: value, path: codingPath) }
        return b
    }

    public func decode(_ type: String.Type) throws -> String {
        guard let s = decoder.readString(value) else { throw decoder.mismatch(type, "a string", at: value, path: codingPath) }
        return s
    }

    public func decode(_ type: Double.Type) throws -> Double { try decoder.readDouble(value, path: codingPath) }
    public func decode(_ type: Float.Type) throws -> Float { try decoder.readFloat(value, path: codingPath) }
    public func decode(_ type: Int.Type) throws -> Int { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: Int8.Type) throws -> Int8 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: Int16.Type) throws -> Int16 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: Int32.Type) throws -> Int32 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: Int64.Type) throws -> Int64 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: UInt.Type) throws -> UInt { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.readInteger(value, type, path: codingPath) }
    public func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.readInteger(value, type, path: codingPath) }

    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        // The same value, decoded as another type: no new path element.
        let savedCursor = decoder.cursor, savedDepth = decoder.cursorDepth
        decoder.cursor = value
        decoder.cursorDepth = Int(depth)
        defer {
            decoder.cursor = savedCursor
            decoder.cursorDepth = savedDepth
        }
        return try decoder.decodeCurrent(type)
    }
}

// MARK: - Numbers on the tape

extension JSONDocument {
    /// The number at `index` as an `I`, when it is an integer in range.
    /// Non-integer notation is accepted when its value is exactly integral
    /// (`1e2`, `10.0`).
    @inline(__always)
    func integer<I: FixedWidthInteger>(at index: UInt32, as type: I.Type) -> I? {
        let e = self[index]
        guard e.kind == .number else { return nil }
        let negative = e.flags & TapeEntry.isNegative != 0
        var magnitude: UInt64 = 0
        if e.flags & TapeEntry.isInteger != 0 {
            let p = base
            var i = Int(e.start) + (negative ? 1 : 0)
            let end = Int(e.end)
            if end - i <= 19 {
                while i < end {
                    magnitude = magnitude &* 10 &+ UInt64(p[i] &- 0x30)
                    i += 1
                }
            } else {
                while i < end {
                    let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                    let (s, o2) = m.addingReportingOverflow(UInt64(p[i] &- 0x30))
                    if o1 || o2 { return nil }
                    magnitude = s
                    i += 1
                }
            }
        } else {
            guard let m = integralMagnitude(e) else { return nil }
            magnitude = m
        }
        if !negative { return I(exactly: magnitude) }
        if magnitude == 0 { return 0 }
        guard I.isSigned else { return nil }
        if let m = I(exactly: magnitude) { return 0 - m }
        if I.bitWidth <= 64 && magnitude &- 1 == UInt64(truncatingIfNeeded: I.max) { return I.min }
        return nil
    }

    /// The magnitude of a number written with a fraction or exponent, when
    /// its value is an integer that fits in UInt64; computed exactly.
    func integralMagnitude(_ e: TapeEntry) -> UInt64? {
        let p = base
        var i = Int(e.start)
        let end = Int(e.end)
        if p[i] == 0x2D { i += 1 }
        // The mantissa (integer and fraction digits) runs up to 'e'/'E'.
        let digitsStart = i
        while i < end, p[i] != 0x65, p[i] != 0x45 { i += 1 }
        let mantissaEnd = i
        var exponent = 0
        if i < end {
            i += 1
            var negativeExponent = false
            if p[i] == 0x2D {
                negativeExponent = true
                i += 1
            } else if p[i] == 0x2B {
                i += 1
            }
            while i < end {
                // Saturate: anything this large is out of range anyway.
                if exponent < 100_000 { exponent = exponent * 10 + Int(p[i] &- 0x30) }
                i += 1
            }
            if negativeExponent { exponent = -exponent }
        }
        // Digits without the dot; the scale is the power of ten they are
        // multiplied by.
        var digits: [UInt8] = []
        var fractionDigits = 0
        var seenDot = false
        var k = digitsStart
        while k < mantissaEnd {
            if p[k] == 0x2E {
                seenDot = true
            } else {
                digits.append(p[k] &- 0x30)
                if seenDot { fractionDigits += 1 }
            }
            k += 1
        }
        var scale = exponent - fractionDigits
        while let last = digits.last, last == 0 {
            digits.removeLast()
            scale += 1
        }
        let firstNonZero = digits.firstIndex { $0 != 0 } ?? digits.count
        digits.removeFirst(firstNonZero)
        if digits.isEmpty { return 0 }
        guard scale >= 0, digits.count + scale <= 20 else { return nil }
        var value: UInt64 = 0
        for d in digits {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            value = s
        }
        for _ in 0..<scale {
            let (m, o) = value.multipliedReportingOverflow(by: 10)
            if o { return nil }
            value = m
        }
        return value
    }

    /// The number at `index` as a finite Double, or nil.
    func double(at index: UInt32) -> Double? {
        let e = self[index]
        guard e.kind == .number else { return nil }
        // Integers of up to 15 digits are exact in a Double.
        if e.flags & TapeEntry.isInteger != 0 && e.end - e.start <= 15 {
            guard let i = integer(at: index, as: Int64.self) else { return nil }
            return i == 0 && e.flags & TapeEntry.isNegative != 0 ? -0.0 : Double(i)
        }
        let text = String(decoding: UnsafeBufferPointer(start: base + Int(e.start), count: Int(e.end - e.start)), as: UTF8.self)
        guard let d = Double(text), d.isFinite else { return nil }
        return d
    }
}
