// The validating scanner behind FastJSONDecoder and RawJSON.
//
// One iterative pass over the input checks it against RFC 8259 (grammar,
// UTF-8, escapes, depth) and records every value as a 16-byte entry on a flat
// "tape" held in reusable storage. Decoding then walks the tape: a keyed
// container looks its keys up by comparing bytes, a string becomes a `String`
// only when the caller asks for it. There is no tree and no per-frame
// allocation once the storage has grown to the size of the largest frame.
//
// Hazards handled here (docs/DESIGN.md, invariant 8, "the decoder is total"):
// - no recursion: open containers are linked through the tape itself, so
//   100,000 opening brackets cost an error at `maxDepth`, not a stack overflow;
// - every read of `p[i]` is preceded by `i < n`;
// - offsets are kept as UInt32, so inputs of 4 GiB and more are refused up
//   front rather than silently truncated.

/// The kind of one value on the tape.
@usableFromInline
enum JSONKind: UInt8 {
    case null = 0, boolTrue, boolFalse, number, string, array, object

    /// "a string", "an object", ... as used in error messages.
    var phrase: String {
        switch self {
        case .null: "null"
        case .boolTrue, .boolFalse: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// One value on the tape.
///
/// - `start`/`end`: for a string, the bytes between the quotes; for a number
///   or literal, its text; for a container, from its opening bracket to one
///   past its closing bracket.
/// - `next`: the index of the entry after this value and everything inside it
///   (its next sibling). While a container is still open, `next` links to the
///   enclosing open container instead (`noParent` at the root).
/// - `flags`: `hasEscapes` for strings; `isInteger`/`isNegative` for numbers.
@usableFromInline
struct TapeEntry {
    var start: UInt32
    var end: UInt32
    var next: UInt32
    var kind: JSONKind
    var flags: UInt8

    static let hasEscapes: UInt8 = 1
    static let isInteger: UInt8 = 1
    static let isNegative: UInt8 = 2
}

private let noParent = UInt32.max

// ASCII bytes used by the scanner.
private let quote: UInt8 = 0x22, backslash: UInt8 = 0x5C, slash: UInt8 = 0x2F
private let comma: UInt8 = 0x2C, colon: UInt8 = 0x3A
private let openBrace: UInt8 = 0x7B, closeBrace: UInt8 = 0x7D
private let openBracket: UInt8 = 0x5B, closeBracket: UInt8 = 0x5D
private let zero: UInt8 = 0x30, nine: UInt8 = 0x39, minus: UInt8 = 0x2D, plus: UInt8 = 0x2B
private let dot: UInt8 = 0x2E, lowerE: UInt8 = 0x65, upperE: UInt8 = 0x45

@inline(__always) private func isDigit(_ b: UInt8) -> Bool { b &- zero <= 9 }

/// Describes a byte for an error message: `'x'` for printable ASCII, else its
/// hex value, so hostile input cannot smuggle control characters into logs.
func describeByte(_ b: UInt8) -> String {
    if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
    if b == 0x20 { return "' '" }
    return "byte 0x" + hex2(b)
}

func hex2(_ b: UInt8) -> String {
    let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F"]
    return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
}

/// A validated JSON text laid out on a tape. Reused from frame to frame; not
/// thread-safe. `base` is only valid during the call that set it.
final class JSONDocument {
    @exclusivity(unchecked) private(set) var entries: UnsafeMutablePointer<TapeEntry>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private(set) var count: Int = 0
    @exclusivity(unchecked) private(set) var base: UnsafePointer<UInt8>
    @exclusivity(unchecked) private(set) var length: Int = 0
    let maxDepth: Int
    /// Unescaped string bytes, reused (a raw buffer: no exclusivity checks).
    @exclusivity(unchecked) private var scratch: UnsafeMutablePointer<UInt8>
    @exclusivity(unchecked) private var scratchCapacity: Int
    @exclusivity(unchecked) private var scratchCount = 0

    nonisolated(unsafe) private static let emptyByte: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    init(maxDepth: Int, initialCapacity: Int = 64) {
        precondition(maxDepth >= 1, "maxDepth must be at least 1")
        self.maxDepth = maxDepth
        capacity = max(initialCapacity, 8)
        entries = .allocate(capacity: capacity)
        base = UnsafePointer(Self.emptyByte)
        scratchCapacity = 256
        scratch = .allocate(capacity: scratchCapacity)
    }

    deinit {
        entries.deallocate()
        scratch.deallocate()
    }

    /// Forgets the input pointer once a decode is done.
    func detach() {
        base = UnsafePointer(Self.emptyByte)
        length = 0
    }

    @inline(__always)
    subscript(_ i: UInt32) -> TapeEntry { entries[Int(i)] }

    @inline(never)
    private func grow() {
        let newCapacity = capacity * 2
        let new = UnsafeMutablePointer<TapeEntry>.allocate(capacity: newCapacity)
        new.moveInitialize(from: entries, count: count)
        entries.deallocate()
        entries = new
        capacity = newCapacity
    }

    @inline(__always)
    private func append(_ kind: JSONKind, _ start: Int, _ end: Int, flags: UInt8 = 0) {
        if count == capacity { grow() }
        entries[count] = TapeEntry(
            start: UInt32(truncatingIfNeeded: start), end: UInt32(truncatingIfNeeded: end),
            next: UInt32(truncatingIfNeeded: count + 1), kind: kind, flags: flags)
        count += 1
    }

    // MARK: - Parsing

    /// Validates `input` as exactly one JSON value surrounded by optional
    /// whitespace and lays it out on the tape (root at index 0).
    func parse(_ input: UnsafeRawBufferPointer) throws {
        count = 0
        guard input.count < Int(UInt32.max) else {
            throw JSONDecodingError(offset: 0, codingPath: "", reason: "input of \(input.count) bytes is too large (limit 4 GiB)")
        }
        if let b = input.baseAddress, input.count > 0 {
            base = b.assumingMemoryBound(to: UInt8.self)
            length = input.count
        } else {
            base = UnsafePointer(Self.emptyByte)
            length = 0
        }
        try scan()
    }

    private func fail(_ offset: Int, _ reason: String) -> JSONDecodingError {
        JSONDecodingError(offset: offset, codingPath: openPath(), reason: reason)
    }

    @inline(__always)
    private func skipWhitespace(_ i: inout Int) {
        let p = base, n = length
        while i < n {
            let b = p[i]
            if b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { i += 1 } else { return }
        }
    }

    @exclusivity(unchecked) private var current: UInt32 = noParent
    @exclusivity(unchecked) private var depth = 0

    private func scan() throws {
        let p = base, n = length
        var i = 0
        current = noParent
        depth = 0
        var inObject = false
        skipWhitespace(&i)

        valueLoop: while true {
            // A value starts at i.
            guard i < n else {
                throw fail(i, "unexpected end of input, expected a JSON value")
            }
            let c = p[i]
            switch c {
            case quote:
                i = try scanString(from: i)
            case openBrace, openBracket:
                guard depth < maxDepth else {
                    throw fail(i, "nesting deeper than \(maxDepth) levels")
                }
                depth += 1
                let isObject = c == openBrace
                if count == capacity { grow() }
                entries[count] = TapeEntry(start: UInt32(truncatingIfNeeded: i), end: 0, next: current,
                                           kind: isObject ? .object : .array, flags: 0)
                current = UInt32(truncatingIfNeeded: count)
                count += 1
                inObject = isObject
                i += 1
                skipWhitespace(&i)
                if i < n && p[i] == (isObject ? closeBrace : closeBracket) {
                    closeContainer(at: i, inObject: &inObject)
                    i += 1
                } else if isObject {
                    try scanKey(&i, after: "'{'")
                    continue valueLoop
                } else {
                    continue valueLoop
                }
            case 0x74: // t
                try expectLiteral(i, "true")
                append(.boolTrue, i, i + 4)
                i += 4
            case 0x66: // f
                try expectLiteral(i, "false")
                append(.boolFalse, i, i + 5)
                i += 5
            case 0x6E: // n
                try expectLiteral(i, "null")
                append(.null, i, i + 4)
                i += 4
            case minus, zero...nine:
                i = try scanNumber(from: i)
            default:
                throw fail(i, "unexpected \(describeByte(c)), expected a JSON value")
            }

            // After a complete value: close containers or move to the next member.
            afterValue: while true {
                skipWhitespace(&i)
                if current == noParent {
                    guard i == n else {
                        throw fail(i, "unexpected \(describeByte(p[i])) after the JSON value")
                    }
                    return
                }
                guard i < n else {
                    throw fail(i, inObject
                        ? "unexpected end of input, expected ',' or '}' after an object member"
                        : "unexpected end of input, expected ',' or ']' after an array element")
                }
                let b = p[i]
                if b == comma {
                    i += 1
                    skipWhitespace(&i)
                    if inObject { try scanKey(&i, after: "','") }
                    continue valueLoop
                }
                if inObject {
                    guard b == closeBrace else {
                        throw fail(i, "expected ',' or '}' after an object member, found \(describeByte(b))")
                    }
                } else {
                    guard b == closeBracket else {
                        throw fail(i, "expected ',' or ']' after an array element, found \(describeByte(b))")
                    }
                }
                closeContainer(at: i, inObject: &inObject)
                i += 1
            }
        }
    }

    @inline(__always)
    private func closeContainer(at i: Int, inObject: inout Bool) {
        let index = Int(current)
        let parent = entries[index].next
        entries[index].end = UInt32(truncatingIfNeeded: i + 1)
        entries[index].next = UInt32(truncatingIfNeeded: count)
        current = parent
        depth -= 1
        inObject = parent != noParent && entries[Int(parent)].kind == .object
    }

    /// Scans `"key"` and the `:` after it; leaves `i` at the member's value.
    @inline(__always)
    private func scanKey(_ i: inout Int, after what: String) throws {
        let p = base, n = length
        guard i < n, p[i] == quote else {
            if i >= n { throw fail(i, "unexpected end of input, expected a string key after \(what)") }
            if what == "'{'" {
                throw fail(i, "expected a string key or '}' after '{', found \(describeByte(p[i]))")
            }
            throw fail(i, "expected a string key after \(what), found \(describeByte(p[i]))")
        }
        i = try scanString(from: i)
        skipWhitespace(&i)
        guard i < n, p[i] == colon else {
            if i >= n { throw fail(i, "unexpected end of input, expected ':' after an object key") }
            throw fail(i, "expected ':' after an object key, found \(describeByte(p[i]))")
        }
        i += 1
        skipWhitespace(&i)
    }

    private func expectLiteral(_ i: Int, _ word: StaticString) throws {
        let p = base, n = length
        let ok = word.withUTF8Buffer { w -> Bool in
            guard n - i >= w.count else { return false }
            for k in 0..<w.count where p[i + k] != w[k] { return false }
            return true
        }
        if !ok { throw fail(i, "invalid literal, expected '\(word)'") }
    }

    /// Scans a number per RFC 8259 §6; returns the index after it.
    private func scanNumber(from start: Int) throws -> Int {
        let p = base, n = length
        var i = start
        var flags = TapeEntry.isInteger
        if p[i] == minus {
            flags |= TapeEntry.isNegative
            i += 1
            guard i < n, isDigit(p[i]) else {
                throw fail(i, "invalid number: expected a digit after '-'")
            }
        }
        if p[i] == zero {
            i += 1
            if i < n && isDigit(p[i]) {
                throw fail(i, "invalid number: leading zeros are not allowed")
            }
        } else {
            while i < n && isDigit(p[i]) { i += 1 }
        }
        if i < n && p[i] == dot {
            flags &= ~TapeEntry.isInteger
            i += 1
            guard i < n, isDigit(p[i]) else {
                throw fail(i, "invalid number: expected a digit after '.'")
            }
            while i < n && isDigit(p[i]) { i += 1 }
        }
        if i < n && (p[i] == lowerE || p[i] == upperE) {
            flags &= ~TapeEntry.isInteger
            i += 1
            if i < n && (p[i] == plus || p[i] == minus) { i += 1 }
            guard i < n, isDigit(p[i]) else {
                throw fail(i, "invalid number: expected a digit in the exponent")
            }
            while i < n && isDigit(p[i]) { i += 1 }
        }
        append(.number, start, i, flags: flags)
        return i
    }

    /// Scans a string starting at its opening quote; returns the index after
    /// the closing quote. Validates escapes and UTF-8.
    private func scanString(from open: Int) throws -> Int {
        let p = base, n = length
        var i = open + 1
        var flags: UInt8 = 0
        while true {
            // Find the next special byte (< 0x20, '"', '\\', >= 0x80), 8
            // bytes at a time. The lowest flagged byte of the SWAR mask is
            // always a real hit (false positives only sit above a real one,
            // where a borrow carried), so jump straight to it.
            if i + 8 <= n {
                let x = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let highs: UInt64 = 0x8080_8080_8080_8080
                let control = (x &- ones &* 0x20) & ~x
                let q = x ^ (ones &* 0x22)
                let quoteHit = (q &- ones) & ~q
                let s = x ^ (ones &* 0x5C)
                let slashHit = (s &- ones) & ~s
                let mask = (control | quoteHit | slashHit | x) & highs
                if mask == 0 {
                    i += 8
                    continue
                }
                i += mask.trailingZeroBitCount &>> 3
                // The usual case, the closing quote, read off the mask
                // (a quote-term bit at the lowest position is a real quote).
                if quoteHit & (mask & (0 &- mask)) != 0 {
                    append(.string, open + 1, i, flags: flags)
                    return i + 1
                }
            } else {
                while i < n {
                    let b = p[i]
                    if b == quote || b == backslash || b < 0x20 || b >= 0x80 { break }
                    i += 1
                }
                guard i < n else {
                    throw fail(n, "unexpected end of input inside a string (missing closing '\"')")
                }
            }
            let b = p[i]
            if b == quote {
                append(.string, open + 1, i, flags: flags)
                return i + 1
            } else if b == backslash {
                flags = TapeEntry.hasEscapes
                i = try scanEscape(at: i)
            } else if b < 0x20 {
                throw fail(i, "control character U+00\(hex2(b)) must be escaped in a string")
            } else {
                i = try scanUTF8(at: i)
            }
        }
    }

    /// Validates the escape sequence at `i` (a backslash); returns the index
    /// after it. A `\u` high surrogate must be followed by a `\u` low one.
    private func scanEscape(at i: Int) throws -> Int {
        let p = base, n = length
        guard i + 1 < n else {
            throw fail(n, "unexpected end of input inside a string (after '\\')")
        }
        switch p[i + 1] {
        case quote, backslash, slash, 0x62, 0x66, 0x6E, 0x72, 0x74: // " \ / b f n r t
            return i + 2
        case 0x75: // u
            let unit = try hex4(at: i + 2, escapeAt: i)
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard i + 7 < n, p[i + 6] == backslash, p[i + 7] == 0x75 else {
                    throw fail(i, "invalid \\u escape: high surrogate \\u\(hexString(unit)) is not followed by a low surrogate")
                }
                let low = try hex4(at: i + 8, escapeAt: i + 6)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw fail(i, "invalid \\u escape: high surrogate \\u\(hexString(unit)) is followed by \\u\(hexString(low)), not a low surrogate")
                }
                return i + 12
            }
            if unit >= 0xDC00 && unit <= 0xDFFF {
                throw fail(i, "invalid \\u escape: lone low surrogate \\u\(hexString(unit))")
            }
            return i + 6
        default:
            throw fail(i, "invalid escape sequence '\\' followed by \(describeByte(p[i + 1]))")
        }
    }

    private func hexString(_ unit: UInt16) -> String {
        hex2(UInt8(unit >> 8)) + hex2(UInt8(unit & 0xFF))
    }

    private func hex4(at i: Int, escapeAt: Int) throws -> UInt16 {
        let p = base, n = length
        guard i + 4 <= n else {
            throw fail(escapeAt, "invalid \\u escape: expected 4 hex digits")
        }
        var value: UInt16 = 0
        for k in 0..<4 {
            guard let d = hexValue(p[i + k]) else {
                throw fail(escapeAt, "invalid \\u escape: expected 4 hex digits")
            }
            value = value << 4 | UInt16(d)
        }
        return value
    }

    /// Validates one UTF-8 sequence at `i` (lead byte >= 0x80) per Unicode
    /// Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF.
    private func scanUTF8(at i: Int) throws -> Int {
        let p = base, n = length
        let b0 = p[i]
        var need: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: need = 2
        case 0xED: need = 2; hi = 0x9F
        case 0xF0: need = 3; lo = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; hi = 0x8F
        default:
            throw fail(i, "invalid UTF-8: byte 0x\(hex2(b0)) cannot start a character")
        }
        guard i + need < n else {
            throw fail(i, "invalid UTF-8: truncated sequence starting with byte 0x\(hex2(b0))")
        }
        let b1 = p[i + 1]
        guard b1 >= lo && b1 <= hi else {
            throw fail(i + 1, "invalid UTF-8: byte 0x\(hex2(b1)) after lead byte 0x\(hex2(b0)) (overlong, surrogate, out of range or truncated)")
        }
        var k = 2
        while k <= need {
            let bk = p[i + k]
            guard bk & 0xC0 == 0x80 else {
                throw fail(i + k, "invalid UTF-8: expected a continuation byte, found byte 0x\(hex2(bk))")
            }
            k += 1
        }
        return i + need + 1
    }

    // MARK: - Paths of syntax errors

    /// The JSON path of the innermost open container, built only when a syntax
    /// error is thrown: "alert.details", "checks[3]".
    private func openPath() -> String {
        var chain: [UInt32] = []
        var c = current
        while c != noParent {
            chain.append(c)
            c = entries[Int(c)].next
        }
        chain.reverse()
        var components: [PathComponent] = []
        for k in chain.indices.dropFirst() {
            let parent = chain[k - 1], child = chain[k]
            if entries[Int(parent)].kind == .object {
                components.append(.key(decodeString(at: child - 1)))
            } else {
                var index = 0
                var e = parent + 1
                while e < child {
                    e = entries[Int(e)].next
                    index += 1
                }
                components.append(.index(index))
            }
        }
        return renderPath(components)
    }

    // MARK: - Reading values

    /// The value bytes of the string at `index`, unescaped (into `scratch`
    /// when it has escapes), passed to `body`.
    @inline(__always)
    func withStringBytes<R>(at index: UInt32, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let e = entries[Int(index)]
        if e.flags & TapeEntry.hasEscapes == 0 {
            return try body(UnsafeBufferPointer(start: base + Int(e.start), count: Int(e.end &- e.start)))
        }
        unescape(e)
        return try body(UnsafeBufferPointer(start: scratch, count: scratchCount))
    }

    /// The string at `index` (which must be a string entry).
    @inline(__always)
    func decodeString(at index: UInt32) -> String {
        withStringBytes(at: index) { String(decoding: $0, as: UTF8.self) }
    }

    /// Unescapes a validated string into `scratch`. Unescaping never makes
    /// a string longer, so the raw length bounds the output.
    private func unescape(_ e: TapeEntry) {
        let p = base
        var i = Int(e.start)
        let end = Int(e.end)
        if end - i > scratchCapacity {
            scratch.deallocate()
            scratchCapacity = max(end - i, scratchCapacity * 2)
            scratch = .allocate(capacity: scratchCapacity)
        }
        let out = scratch
        var o = 0
        while i < end {
            let b = p[i]
            guard b == backslash else {
                out[o] = b
                o += 1
                i += 1
                continue
            }
            let c = p[i + 1]
            i += 2
            switch c {
            case 0x62: out[o] = 0x08
            case 0x66: out[o] = 0x0C
            case 0x6E: out[o] = 0x0A
            case 0x72: out[o] = 0x0D
            case 0x74: out[o] = 0x09
            case 0x75:
                var scalar = UInt32(hexUnit(p + i))
                i += 4
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    let low = UInt32(hexUnit(p + i + 2))
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                o = writeUTF8(scalar, to: out, at: o)
                continue
            default: out[o] = c // " \ /
            }
            o += 1
        }
        scratchCount = o
    }

    /// Whether the string at `index` equals `key` (compared as UTF-8 bytes,
    /// after unescaping).
    @inline(__always)
    func stringEquals(_ index: UInt32, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let e = entries[Int(index)]
        if e.flags & TapeEntry.hasEscapes != 0 {
            unescape(e)
            return bytesEqual(UnsafeBufferPointer(start: scratch, count: scratchCount), key)
        }
        let len = Int(e.end &- e.start)
        guard len == key.count else { return false }
        return bytesEqual(UnsafeBufferPointer(start: base + Int(e.start), count: len), key)
    }

    /// The raw text of the value at `index` (no surrounding whitespace).
    @inline(__always)
    func span(of index: UInt32) -> UnsafeBufferPointer<UInt8> {
        let e = entries[Int(index)]
        if e.kind == .string {
            // Include the quotes.
            return UnsafeBufferPointer(start: base + Int(e.start) - 1, count: Int(e.end &- e.start) + 2)
        }
        return UnsafeBufferPointer(start: base + Int(e.start), count: Int(e.end &- e.start))
    }

    /// The key entry of the first member of the object at `object` whose key
    /// (after unescaping) repeats an earlier one, or nil. Pairwise for the
    /// small objects requests are made of, hashed past 16 members: a hostile
    /// object of many keys costs linear time, not quadratic.
    func firstRepeatedKey(in object: UInt32) -> UInt32? {
        let end = entries[Int(object)].next
        var members = 0
        var i = object &+ 1
        while i < end {
            members += 1
            i = entries[Int(i &+ 1)].next
        }
        guard members > 1 else { return nil }
        if members > 16 {
            var seen = Set<[UInt8]>()
            i = object &+ 1
            while i < end {
                if !seen.insert(withStringBytes(at: i) { Array($0) }).inserted { return i }
                i = entries[Int(i &+ 1)].next
            }
            return nil
        }
        // A 64-bit filter over (length, first and last byte) first: keys
        // that differ there cannot be equal, and for the few keys a request
        // has that settles it without comparing pairs. Escaped keys, or a
        // collision, take the exact comparison below.
        var filter: UInt64 = 0
        var clash = false
        i = object &+ 1
        while i < end {
            let e = entries[Int(i)]
            let length = Int(e.end &- e.start)
            if e.flags & TapeEntry.hasEscapes != 0 || length == 0 {
                clash = true
                break
            }
            let first = base[Int(e.start)], last = base[Int(e.end) - 1]
            let bit: UInt64 = 1 << ((UInt64(length) &* 7 &+ UInt64(first) &* 3 &+ UInt64(last)) & 63)
            if filter & bit != 0 {
                clash = true
                break
            }
            filter |= bit
            i = entries[Int(i &+ 1)].next
        }
        guard clash else { return nil }
        var later = entries[Int(object &+ 2)].next
        while later < end {
            var earlier = object &+ 1
            while earlier < later {
                if keysEqual(earlier, later) { return later }
                earlier = entries[Int(earlier &+ 1)].next
            }
            later = entries[Int(later &+ 1)].next
        }
        return nil
    }

    /// Whether two string entries hold the same text after unescaping;
    /// without escapes (the usual case), a byte comparison in place.
    @inline(__always)
    private func keysEqual(_ a: UInt32, _ b: UInt32) -> Bool {
        let ea = entries[Int(a)], eb = entries[Int(b)]
        if (ea.flags | eb.flags) & TapeEntry.hasEscapes == 0 {
            let length = Int(ea.end &- ea.start)
            guard length == Int(eb.end &- eb.start) else { return false }
            return bytesEqual(
                UnsafeBufferPointer(start: base + Int(ea.start), count: length),
                UnsafeBufferPointer(start: base + Int(eb.start), count: length))
        }
        // `stringEquals` may unescape into the shared scratch buffer: the
        // other key goes through a copy.
        let bytes = withStringBytes(at: b) { Array($0) }
        return bytes.withUnsafeBufferPointer { stringEquals(a, $0) }
    }

    /// The value index of member `key` of the object at `object` (the last
    /// one when the key repeats), or nil.
    @inline(__always)
    func member(of object: UInt32, _ key: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var found: UInt32? = nil
        var i = object &+ 1
        let end = entries[Int(object)].next
        while i < end {
            if stringEquals(i, key) { found = i &+ 1 }
            i = entries[Int(i &+ 1)].next
        }
        return found
    }
}

@inline(__always)
func bytesEqual(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    guard let pa = a.baseAddress, let pb = b.baseAddress else { return true }
    var k = 0
    let n = a.count
    while k + 8 <= n {
        if UnsafeRawPointer(pa + k).loadUnaligned(as: UInt64.self) != UnsafeRawPointer(pb + k).loadUnaligned(as: UInt64.self) {
            return false
        }
        k += 8
    }
    while k < n {
        if pa[k] != pb[k] { return false }
        k += 1
    }
    return true
}

@inline(__always)
func hexValue(_ b: UInt8) -> UInt8? {
    switch b {
    case 0x30...0x39: b - 0x30
    case 0x41...0x46: b - 0x41 + 10
    case 0x61...0x66: b - 0x61 + 10
    default: nil
    }
}

/// Four already-validated hex digits.
@inline(__always)
private func hexUnit(_ p: UnsafePointer<UInt8>) -> UInt16 {
    var v: UInt16 = 0
    for k in 0..<4 { v = v << 4 | UInt16(hexValue(p[k]) ?? 0) }
    return v
}

/// Writes `scalar` as UTF-8 at `out[o...]`; returns the index after it.
@inline(__always)
private func writeUTF8(_ scalar: UInt32, to out: UnsafeMutablePointer<UInt8>, at o: Int) -> Int {
    switch scalar {
    case 0..<0x80:
        out[o] = UInt8(scalar)
        return o + 1
    case 0x80..<0x800:
        out[o] = UInt8(0xC0 | scalar >> 6)
        out[o + 1] = UInt8(0x80 | scalar & 0x3F)
        return o + 2
    case 0x800..<0x10000:
        out[o] = UInt8(0xE0 | scalar >> 12)
        out[o + 1] = UInt8(0x80 | scalar >> 6 & 0x3F)
        out[o + 2] = UInt8(0x80 | scalar & 0x3F)
        return o + 3
    default:
        out[o] = UInt8(0xF0 | scalar >> 18)
        out[o + 1] = UInt8(0x80 | scalar >> 12 & 0x3F)
        out[o + 2] = UInt8(0x80 | scalar >> 6 & 0x3F)
        out[o + 3] = UInt8(0x80 | scalar & 0x3F)
        return o + 4
    }
}

@inline(__always)
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        out.append(UInt8(scalar))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | scalar >> 6))
        out.append(UInt8(0x80 | scalar & 0x3F))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | scalar >> 12))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    default:
        out.append(UInt8(0xF0 | scalar >> 18))
        out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    }
}

// MARK: - Coding paths

/// One step of a coding path.
enum PathComponent {
    case key(String)
    case index(Int)
}

/// Renders a path the way people write it: `alert.severity`, `checks[3].id`.
/// Keys that are not plain identifiers are quoted: `details["a b"]`.
func renderPath(_ components: [PathComponent]) -> String {
    var out = ""
    for component in components {
        switch component {
        case .index(let i):
            out += "[\(i)]"
        case .key(let k):
            if isPlainKey(k) {
                if !out.isEmpty { out += "." }
                out += k
            } else {
                out += "[" + jsonQuoted(k) + "]"
            }
        }
    }
    return out
}

private func isPlainKey(_ k: String) -> Bool {
    guard let first = k.utf8.first, !(first >= 0x30 && first <= 0x39) else { return false }
    return k.utf8.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
    }
}

/// Quotes a value for an error message the way it would appear in JSON
/// (through `JSONWriter`, the one string escaper), so a control character
/// in hostile input cannot break the message apart; cut at 64 characters.
package func jsonQuoted(_ text: String) -> String {
    let cut = text.unicodeScalars.count > 64
    var writer = JSONWriter(capacity: min(text.utf8.count, 256) + 8)
    writer.string(cut ? String(String.UnicodeScalarView(text.unicodeScalars.prefix(64))) : text)
    var quoted = String(decoding: writer.bytes, as: UTF8.self)
    if cut { quoted.insert("…", at: quoted.index(before: quoted.endIndex)) }
    return quoted
}
