/// Writes JSON frames straight into a reusable byte buffer.
///
/// Commas are automatic at any nesting: `needsComma` is cleared by
/// `beginObject`/`beginArray`/`key` and set after every value, and `key`
/// and every value write a comma first when it is set. The caller keeps the
/// structure balanced (keys only inside objects, one value after each key).
///
/// ```
/// var w = JSONWriter()
/// w.beginObject(); w.key("type"); w.string("ok"); w.key("sequence"); w.uint(7); w.endObject()
/// w.newline()   // {"type":"ok","sequence":7}\n
/// ```
public struct JSONWriter {
    public var bytes: [UInt8]
    @usableFromInline var needsComma = false

    public init(capacity: Int = 512) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Empties the buffer, keeping its capacity.
    public mutating func reset() {
        // removeLast(n) only lowers the count; removeAll(keepingCapacity:)
        // goes through the general replaceSubrange path.
        bytes.removeLast(bytes.count)
        needsComma = false
    }

    @inline(__always)
    mutating func separate() {
        if needsComma { bytes.append(0x2C) }
    }

    public mutating func beginObject() {
        separate()
        bytes.append(0x7B)
        needsComma = false
    }

    public mutating func endObject() {
        bytes.append(0x7D)
        needsComma = true
    }

    public mutating func beginArray() {
        separate()
        bytes.append(0x5B)
        needsComma = false
    }

    public mutating func endArray() {
        bytes.append(0x5D)
        needsComma = true
    }

    /// Writes the comma when one is needed, then `"key":`.
    public mutating func key(_ key: StaticString) {
        guard key.hasPointerRepresentation else {
            // A single-scalar literal: rare, written through String.
            return self.key(key.description)
        }
        separate()
        key.withUTF8Buffer { writeQuoted($0) }
        bytes.append(0x3A)
        needsComma = false
    }

    /// Writes the comma when one is needed, then `"key":`.
    public mutating func key(_ key: String) {
        separate()
        writeQuoted(key)
        bytes.append(0x3A)
        needsComma = false
    }

    /// A string, escaped per RFC 8259 (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`,
    /// `\f`, other controls as `\u00XX`); non-ASCII is written as UTF-8 and
    /// `/` is not escaped.
    public mutating func string(_ value: String) {
        separate()
        writeQuoted(value)
        needsComma = true
    }

    public mutating func int(_ v: Int) {
        separate()
        if v < 0 {
            bytes.append(0x2D)
            writeDigits(UInt64(v.magnitude))
        } else {
            writeDigits(UInt64(v))
        }
        needsComma = true
    }

    public mutating func uint(_ v: UInt64) {
        separate()
        writeDigits(v)
        needsComma = true
    }

    /// Shortest round-trip text; `null` for infinities and NaN.
    public mutating func double(_ v: Double) {
        separate()
        if v.isFinite {
            var text = v.description
            text.withUTF8 { bytes.append(contentsOf: $0) }
        } else {
            appendLiteral("null")
        }
        needsComma = true
    }

    public mutating func bool(_ v: Bool) {
        separate()
        appendLiteral(v ? "true" : "false")
        needsComma = true
    }

    public mutating func null() {
        separate()
        appendLiteral("null")
        needsComma = true
    }

    /// Writes already-validated JSON verbatim.
    public mutating func raw(_ json: RawJSON) {
        separate()
        bytes.append(contentsOf: json.bytes)
        needsComma = true
    }

    /// Writes bytes verbatim; the caller guarantees they are one valid JSON value.
    public mutating func rawBytes(_ raw: UnsafeRawBufferPointer) {
        separate()
        bytes.append(contentsOf: raw)
        needsComma = true
    }

    /// A JSON number, verbatim.
    public mutating func number(_ n: JSONNumber) {
        separate()
        var text = n.text
        text.withUTF8 { bytes.append(contentsOf: $0) }
        needsComma = true
    }

    /// Any JSON value (objects keep member order).
    public mutating func value(_ v: JSONValue) {
        switch v {
        case .null: null()
        case .bool(let b): bool(b)
        case .number(let n): number(n)
        case .string(let s): string(s)
        case .array(let elements):
            beginArray()
            for e in elements { value(e) }
            endArray()
        case .object(let object):
            beginObject()
            for m in object.members {
                key(m.key)
                value(m.value)
            }
            endObject()
        }
    }

    /// `"2026-11-29T04:27:13.123Z"`: RFC 3339, UTC, milliseconds, written by
    /// hand (proleptic Gregorian calendar; years outside 0...9999 are written
    /// with as many digits as they need).
    public mutating func timestamp(millisecondsSinceEpoch ms: Int64) {
        separate()
        let msPerDay: Int64 = 86_400_000
        var days = ms / msPerDay
        var msOfDay = ms % msPerDay
        if msOfDay < 0 {
            msOfDay += msPerDay
            days -= 1
        }
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)

        guard year >= 0 && year < 10000 else {
            writeTimestampSlow(year: year, month: month, day: day, msOfDay: msOfDay)
            return
        }
        // "YYYY-MM-DDTHH:MM:SS.mmmZ" in quotes: 26 bytes, written in one append.
        let seconds = Int(msOfDay / 1000)
        let millis = Int(msOfDay % 1000)
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 26) { b in
            @inline(__always) func two(_ v: Int, _ at: Int) {
                b[at] = UInt8(truncatingIfNeeded: v / 10) &+ 0x30
                b[at + 1] = UInt8(truncatingIfNeeded: v % 10) &+ 0x30
            }
            let y = Int(year)
            b[0] = 0x22
            two(y / 100, 1); two(y % 100, 3)
            b[5] = 0x2D
            two(Int(month), 6)
            b[8] = 0x2D
            two(Int(day), 9)
            b[11] = 0x54
            two(seconds / 3600, 12)
            b[14] = 0x3A
            two(seconds / 60 % 60, 15)
            b[17] = 0x3A
            two(seconds % 60, 18)
            b[20] = 0x2E
            b[21] = UInt8(truncatingIfNeeded: millis / 100) &+ 0x30
            two(millis % 100, 22)
            b[24] = 0x5A
            b[25] = 0x22
            bytes.append(contentsOf: UnsafeBufferPointer(b))
        }
        needsComma = true
    }

    /// Years outside 0...9999: a sign and as many digits as needed.
    private mutating func writeTimestampSlow(year: Int64, month: Int64, day: Int64, msOfDay: Int64) {
        bytes.append(0x22)
        if year < 0 { bytes.append(0x2D) }
        let y = year.magnitude
        if y < 10000 { writeFixed(UInt64(y), width: 4) } else { writeDigits(UInt64(y)) }
        bytes.append(0x2D)
        writeFixed(UInt64(month), width: 2)
        bytes.append(0x2D)
        writeFixed(UInt64(day), width: 2)
        bytes.append(0x54) // T
        let secondsOfDay = msOfDay / 1000
        writeFixed(UInt64(secondsOfDay / 3600), width: 2)
        bytes.append(0x3A)
        writeFixed(UInt64(secondsOfDay / 60 % 60), width: 2)
        bytes.append(0x3A)
        writeFixed(UInt64(secondsOfDay % 60), width: 2)
        bytes.append(0x2E)
        writeFixed(UInt64(msOfDay % 1000), width: 3)
        bytes.append(0x5A) // Z
        bytes.append(0x22)
        needsComma = true
    }

    /// Ends a frame with `\n`; the next value starts without a comma.
    public mutating func newline() {
        bytes.append(0x0A)
        needsComma = false
    }

    // MARK: - Helpers

    @inline(__always)
    private mutating func appendLiteral(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func writeDigits(_ v: UInt64) {
        // 20 digits at most; written backwards into a stack buffer.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
            var i = 20
            var x = v
            repeat {
                i -= 1
                buf[i] = UInt8(truncatingIfNeeded: x % 10) &+ 0x30
                x /= 10
            } while x != 0
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buf[i..<20]))
        }
    }

    @inline(__always)
    private mutating func writeFixed(_ v: UInt64, width: Int) {
        var divisor: UInt64 = 1
        for _ in 1..<width { divisor *= 10 }
        var x = v
        while divisor > 0 {
            bytes.append(UInt8(truncatingIfNeeded: x / divisor % 10) &+ 0x30)
            x %= divisor
            divisor /= 10
        }
    }

    @inline(__always)
    mutating func writeQuoted(_ s: String) {
        if let done: Void = s.utf8.withContiguousStorageIfAvailable({ writeQuoted($0) }) {
            return done
        }
        var copy = s
        copy.withUTF8 { writeQuoted($0) }
    }

    /// `"…"` with RFC 8259 escapes; runs that need none are copied in one append.
    mutating func writeQuoted(_ s: UnsafeBufferPointer<UInt8>) {
        bytes.append(0x22)
        guard let p = s.baseAddress else {
            bytes.append(0x22)
            return
        }
        let n = s.count
        var runStart = 0
        var i = 0
        while i < n {
            // Jump 8 bytes at a time to the next byte that needs escaping
            // (< 0x20, '"', '\\'); the lowest flagged byte is a real hit.
            if i + 8 <= n {
                let x = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let ones: UInt64 = 0x0101_0101_0101_0101
                let highs: UInt64 = 0x8080_8080_8080_8080
                let control = (x &- ones &* 0x20) & ~x
                let q = x ^ (ones &* 0x22)
                let s = x ^ (ones &* 0x5C)
                let mask = (control | ((q &- ones) & ~q) | ((s &- ones) & ~s)) & highs
                if mask == 0 {
                    i += 8
                    continue
                }
                i += mask.trailingZeroBitCount &>> 3
            } else {
                let b = p[i]
                if b >= 0x20 && b != 0x22 && b != 0x5C {
                    i += 1
                    continue
                }
            }
            let b = p[i]
            if runStart < i { bytes.append(contentsOf: UnsafeBufferPointer(start: p + runStart, count: i - runStart)) }
            bytes.append(0x5C)
            switch b {
            case 0x22: bytes.append(0x22)
            case 0x5C: bytes.append(0x5C)
            case 0x0A: bytes.append(0x6E)
            case 0x0D: bytes.append(0x72)
            case 0x09: bytes.append(0x74)
            case 0x08: bytes.append(0x62)
            case 0x0C: bytes.append(0x66)
            default:
                let hexDigits: StaticString = "0123456789abcdef"
                bytes.append(0x75)
                bytes.append(0x30)
                bytes.append(0x30)
                hexDigits.withUTF8Buffer { h in
                    bytes.append(h[Int(b >> 4)])
                    bytes.append(h[Int(b & 15)])
                }
            }
            i += 1
            runStart = i
        }
        if runStart < n { bytes.append(contentsOf: UnsafeBufferPointer(start: p + runStart, count: n - runStart)) }
        bytes.append(0x22)
    }
}
