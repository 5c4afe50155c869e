/// A type `FastJSONDecoder` decodes through unboxed, concrete containers
/// instead of `init(from:)`'s `any Decoder`.
///
/// Any `Decodable` type decodes with `FastJSONDecoder`. Adopting this
/// protocol is an optional speed-up for types decoded once per frame (a
/// server's request type): the decoder calls `init(fastJSON:)` with a
/// ``FastJSONValueDecoder`` whose containers are concrete structs, so no
/// existential is built and no dynamic cast runs per value. For a `ping`
/// frame of the SecureOps protocol that is about a third of the decode time.
///
/// Write the decoding logic once, generic over the container, and call it
/// from both initializers, so every other decoder (Foundation's
/// `JSONDecoder`, say) gets the same behaviour and the same errors:
///
/// ```swift
/// struct Update: FastJSONDecodable {
///     var name: String
///     var state: String
///
///     enum CodingKeys: String, CodingKey { case name, state }
///
///     init(from decoder: any Decoder) throws {
///         try self.init(container: decoder.container(keyedBy: CodingKeys.self))
///     }
///
///     init(fastJSON decoder: FastJSONValueDecoder) throws {
///         try self.init(container: decoder.keyedContainer(keyedBy: CodingKeys.self))
///     }
///
///     private init<C: KeyedDecodingContainerProtocol>(container: C) throws where C.Key == CodingKeys {
///         name = try container.decode(String.self, forKey: .name)
///         state = try container.decode(String.self, forKey: .state)
///     }
/// }
/// ```
///
/// The SecureOps protocol's own `IpcRequest`, `AlertInput` and `Severity`
/// adopt it the same way; the decoder knows nothing about them.
public protocol FastJSONDecodable: Decodable {
    /// Decodes the value `decoder` points at. Errors thrown here reach the
    /// caller of `FastJSONDecoder.decode` as a `JSONDecodingError` with the
    /// coding path, like errors from `init(from:)`.
    init(fastJSON decoder: FastJSONValueDecoder) throws

    /// The value of a whole frame this type knows byte for byte, or nil to
    /// parse it normally. Called before parsing, for top-level decodes only.
    ///
    /// For the few frames a server sees most (`{"type":"ping"}`), comparing
    /// bytes with a known literal is a fraction of the cost of parsing. Only
    /// answer for input that is exactly a valid JSON text you wrote down: the
    /// decoder does not validate what this returns a value for.
    static func decodeKnownFrame(_ frame: UnsafeRawBufferPointer) -> Self?
}

extension FastJSONDecodable {
    /// No known frames: every frame is parsed.
    @inline(__always)
    public static func decodeKnownFrame(_ frame: UnsafeRawBufferPointer) -> Self? { nil }
}

/// One JSON value inside a `FastJSONDecoder` run, handed to
/// ``FastJSONDecodable/init(fastJSON:)``.
///
/// Valid only during that call: it reads the decoder's scratch storage,
/// which the next decode reuses. Do not keep it.
public struct FastJSONValueDecoder {
    // Not retained: the decoder outlives every value it hands out (they
    // are valid only during `init(fastJSON:)`), and a retain/release pair
    // per value is a measurable share of decoding a small frame.
    unowned(unsafe) let impl: JSONDecoderImpl
    let value: UInt32
    let depth: Int

    init(impl: JSONDecoderImpl, value: UInt32, depth: Int) {
        self.impl = impl
        self.value = value
        self.depth = depth
    }

    /// The path of keys and indices from the root to this value.
    public var codingPath: [any CodingKey] { impl.codingPath(depth: depth) }

    /// The value as an object. Throws a type mismatch if it is not one.
    @inline(__always)
    public func keyedContainer<Key: CodingKey>(keyedBy type: Key.Type) throws -> FastJSONKeyedContainer<Key> {
        guard impl.document[value].kind == .object else { throw notAnObject() }
        return try FastJSONKeyedContainer(decoder: impl, object: value, depth: depth)
    }

    // Out of line: building the error's metadata stays off the hot path.
    @inline(never)
    private func notAnObject() -> DecodingError {
        impl.mismatch([String: Any].self, "a JSON object", at: value, path: codingPath)
    }

    /// The value as one scalar (or any value decoded as a whole).
    @inline(__always)
    public func singleValueContainer() -> FastJSONSingleValueContainer {
        FastJSONSingleValueContainer(decoder: impl, value: value, depth: UInt32(truncatingIfNeeded: depth))
    }

    /// The value as an array. Throws a type mismatch if it is not one.
    public func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard impl.document[value].kind == .array else {
            throw impl.mismatch([Any].self, "a JSON array", at: value, path: codingPath)
        }
        return JSONUnkeyedContainer(decoder: impl, array: value, depth: depth)
    }

    /// The same value behind the standard `Decoder` interface, for code
    /// shared with `init(from:)` that wants a `Decoder`.
    public var decoder: any Decoder {
        JSONDecoderImpl(document: impl.document, cursor: value, path: impl.pathPrefix(depth))
    }
}
