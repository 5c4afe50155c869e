import ArgumentParser
import Glibc

/// Which server the workload talks to, and so which bytes go on the wire.
enum Target: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// secureopsd: newline-delimited JSON (WIRE.md).
    case secureops
    /// redis-server: RESP, `SUBSCRIBE`/`PUBLISH` for fan-out, `PING` for rpc.
    case redis

    var serverName: String { self == .secureops ? "secureopsd" : "redis-server" }
}

/// The request an rpc run repeats.
enum RequestKind: String, ExpressibleByArgument, CaseIterable, Sendable {
    case ping, status, publish
}

/// Every byte the tool sends, per target, and the few fixed positions it
/// reads back. Alerts carry the publisher's send time as the last 19 digits
/// of `message`, right before a constant tail (`","details":null}`, and for
/// secureopsd the `origin` it adds: this process's uid and pid), so a
/// subscriber finds both the sequence (fixed offset from the front) and the
/// send time (fixed offset from the back) without decoding the body.
struct Wire: Sendable {
    let target: Target
    /// Bytes of padding in `message` so a delivered frame is `size` bytes.
    let padding: Int
    /// The alert frame size this padding gives (with a 7-digit sequence).
    let frameBytes: Int

    static let alertPrefix: [UInt8] = Array(#"{"type":"alert","sequence":"#.utf8)
    /// The end of a Redis payload (the tool writes it whole).
    static let alertSuffix: [UInt8] = Array(#"","details":null}"#.utf8)
    /// How every alert this tool published ends as subscribers receive it:
    /// secureopsd appends the publisher's kernel credentials, which are
    /// this process's.
    static func deliveredSuffix(_ target: Target) -> [UInt8] {
        switch target {
        case .redis: alertSuffix
        case .secureops: Array(#"","details":null,"origin":{"uid":\#(getuid()),"pid":\#(getpid())}}"#.utf8)
        }
    }
    static let timestampDigits = 19
    /// The channel Redis runs use.
    static let channel = "bench"

    /// A fixed RFC 3339 timestamp, so Redis payloads are as long as the
    /// frames secureopsd builds (whose timestamp it sets itself).
    private static let fixedTimestamp = "2026-11-29T04:27:13.123Z"

    init(target: Target, size: Int) {
        self.target = target
        let bare = Self.alertBody(target: target, sequence: 1_000_000, publisher: 0, padding: 0, timestamp: 0).count
            + (target == .secureops ? 1 : 1)  // the newline (secureops); Redis: its payload plus the same one byte, for equal sizes
        padding = max(0, size - bare)
        frameBytes = bare + padding
    }

    /// The smallest frame size an alert can have (no padding).
    static func minimumSize(_ target: Target) -> Int {
        Wire(target: target, size: 0).frameBytes
    }

    /// The body an alert is delivered as (secureops: what the daemon builds
    /// from our publish; Redis: the payload we publish ourselves).
    static func alertBody(target: Target, sequence: UInt64, publisher: Int, padding: Int, timestamp: UInt64) -> [UInt8] {
        var text = #"{"type":"alert","sequence":\#(sequence),"#
        if target == .redis { text += #""publisher":\#(publisher),"# }
        text += #""timestamp":"\#(fixedTimestamp)","severity":"info","source":"bench","message":""#
        var bytes = Array(text.utf8)
        bytes += [UInt8](repeating: UInt8(ascii: "x"), count: padding)
        bytes += digits19(timestamp)
        bytes += deliveredSuffix(target)
        return bytes
    }

    static func digits19(_ value: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: timestampDigits)
        var v = value
        var i = timestampDigits - 1
        while v > 0 && i >= 0 {
            out[i] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
            i -= 1
        }
        return out
    }

    // MARK: - Requests

    var subscribeRequest: [UInt8] {
        switch target {
        case .secureops: Array("{\"type\":\"subscribe\"}\n".utf8)
        case .redis: Self.resp(["SUBSCRIBE", Self.channel])
        }
    }

    /// One rpc request (publish requests carry a zero send time: rpc runs
    /// have no subscribers).
    func request(_ kind: RequestKind) throws -> [UInt8] {
        switch (target, kind) {
        case (.secureops, .ping): return Array("{\"type\":\"ping\"}\n".utf8)
        case (.secureops, .status): return Array("{\"type\":\"status\"}\n".utf8)
        case (.secureops, .publish): return PublishTemplate(wire: self).secureopsFrame
        case (.redis, .ping): return Self.resp(["PING"])
        case (.redis, .publish):
            let body = Self.alertBody(target: .redis, sequence: 1, publisher: 0, padding: padding, timestamp: 0)
            return Self.resp(["PUBLISH", Self.channel, String(decoding: body, as: UTF8.self)])
        case (.redis, .status):
            throw BenchError("--request status has no Redis equivalent; compare with --request ping or --request publish")
        }
    }

    /// A RESP array of bulk strings.
    static func resp(_ parts: [String]) -> [UInt8] {
        var out = Array("*\(parts.count)\r\n".utf8)
        for part in parts {
            out += Array("$\(part.utf8.count)\r\n".utf8)
            out += Array(part.utf8)
            out += [0x0D, 0x0A]
        }
        return out
    }

    /// Whether one response line is a success (secureops `{"type":"ok"…`,
    /// Redis `+…` or `:…`).
    @inline(__always)
    func isSuccess(_ line: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        switch target {
        case .secureops:
            // {"type":"ok" — byte 9 is 'o' for ok, 'e' for err, 'a' for alert.
            return count >= 12 && line[9] == UInt8(ascii: "o") && line[10] == UInt8(ascii: "k")
        case .redis:
            return count >= 1 && (line[0] == UInt8(ascii: "+") || line[0] == UInt8(ascii: ":"))
        }
    }
}

/// Publish requests, built once and stamped per send: only the send time
/// (and, for Redis, the publisher's own sequence) change from one to the
/// next.
struct PublishTemplate {
    let wire: Wire
    /// secureops: the whole request with a zero send time.
    let secureopsFrame: [UInt8]
    /// secureops: where the 19 send-time digits start in `secureopsFrame`.
    let secureopsTimestampOffset: Int
    /// Redis: the payload after the publisher number, up to the send time.
    let redisMiddle: [UInt8]

    init(wire: Wire) {
        self.wire = wire
        var frame = Array(#"{"type":"publish","alert":{"severity":"info","source":"bench","message":""#.utf8)
        frame += [UInt8](repeating: UInt8(ascii: "x"), count: wire.padding)
        secureopsTimestampOffset = frame.count
        frame += Wire.digits19(0)
        frame += Array("\"}}\n".utf8)
        secureopsFrame = frame
        var middle = Array(#","timestamp":"2026-11-29T04:27:13.123Z","severity":"info","source":"bench","message":""#.utf8)
        middle += [UInt8](repeating: UInt8(ascii: "x"), count: wire.padding)
        redisMiddle = middle
    }

    /// Writes one publish request at `out` and returns its length. `out`
    /// must have room for `maximumLength` bytes.
    @inline(__always)
    func write(to out: UnsafeMutablePointer<UInt8>, sequence: UInt64, publisher: Int, timestamp: UInt64) -> Int {
        switch wire.target {
        case .secureops:
            secureopsFrame.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
            writeDigits19(timestamp, to: out + secureopsTimestampOffset)
            return secureopsFrame.count
        case .redis:
            // *3 $7 PUBLISH $5 bench $L <payload>
            let sequenceDigits = decimalLength(sequence)
            let publisherDigits = decimalLength(UInt64(publisher))
            let payloadLength = Wire.alertPrefix.count + sequenceDigits + 13 + publisherDigits
                + redisMiddle.count + Wire.timestampDigits + Wire.alertSuffix.count
            var p = out
            p = append(Self.redisHead, at: p)
            p = appendDecimal(UInt64(payloadLength), at: p)
            p = append(Self.crlf, at: p)
            p = append(Wire.alertPrefix, at: p)
            p = appendDecimal(sequence, at: p)
            p = append(Self.publisherKey, at: p)
            p = appendDecimal(UInt64(publisher), at: p)
            p = append(redisMiddle, at: p)
            writeDigits19(timestamp, to: p)
            p += Wire.timestampDigits
            p = append(Wire.alertSuffix, at: p)
            p = append(Self.crlf, at: p)
            return out.distance(to: p)
        }
    }

    var maximumLength: Int { secureopsFrame.count + redisMiddle.count + 128 }

    private static let redisHead: [UInt8] = Array("*3\r\n$7\r\nPUBLISH\r\n$5\r\n\(Wire.channel)\r\n$".utf8)
    private static let crlf: [UInt8] = [0x0D, 0x0A]
    private static let publisherKey: [UInt8] = Array(#","publisher":"#.utf8)
}

// MARK: - Byte helpers

@inline(__always)
func append(_ bytes: [UInt8], at p: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
    bytes.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: $0.count) }
    return p + bytes.count
}

@inline(__always)
func decimalLength(_ value: UInt64) -> Int {
    var v = value
    var n = 1
    while v >= 10 { v /= 10; n += 1 }
    return n
}

@inline(__always)
func appendDecimal(_ value: UInt64, at p: UnsafeMutablePointer<UInt8>) -> UnsafeMutablePointer<UInt8> {
    let n = decimalLength(value)
    var v = value
    var i = n - 1
    while i >= 0 {
        p[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
        v /= 10
        i -= 1
    }
    return p + n
}

@inline(__always)
func writeDigits19(_ value: UInt64, to p: UnsafeMutablePointer<UInt8>) {
    var v = value
    var i = Wire.timestampDigits - 1
    while i >= 0 {
        p[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
        v /= 10
        i -= 1
    }
}

/// Parses the unsigned decimal starting at `line[from]`; returns the value
/// and the index just past its last digit (== `from` when there is none).
@inline(__always)
func parseDecimal(_ line: UnsafePointer<UInt8>, from: Int, end: Int) -> (value: UInt64, next: Int) {
    var value: UInt64 = 0
    var i = from
    while i < end {
        let digit = line[i] &- UInt8(ascii: "0")
        if digit > 9 { break }
        value = value &* 10 &+ UInt64(digit)
        i += 1
    }
    return (value, i)
}

/// The index just past `needle` in `line[from..<end]`, or nil.
func find(_ needle: [UInt8], in line: UnsafePointer<UInt8>, from: Int, end: Int) -> Int? {
    guard end - from >= needle.count else { return nil }
    // Lines searched this way are control frames (lag notices, subscribe
    // confirmations), never the alert hot path: a plain scan will do.
    let first = needle[0]
    var i = from
    while i + needle.count <= end {
        if line[i] == first && hasPrefix(needle, line + i, end - i) { return i + needle.count }
        i += 1
    }
    return nil
}

@inline(__always)
func hasPrefix(_ prefix: [UInt8], _ line: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    guard count >= prefix.count else { return false }
    return prefix.withUnsafeBufferPointer { memcmp(line, $0.baseAddress!, $0.count) == 0 }
}

/// The two per-frame reads of an alert, done with 8-byte loads.
struct AlertScan {
    /// The prefix as words, held by value: a static would cost a
    /// `swift_once` check on every frame.
    private let words: (UInt64, UInt64, UInt64, UInt64)

    init() {
        words = Wire.alertPrefix.withUnsafeBytes {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
             $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 19, as: UInt64.self))
        }
    }

    /// Whether the line starts with `{"type":"alert","sequence":` (27 bytes).
    @inline(__always)
    func isAlert(_ line: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        guard count > 27 else { return false }
        let raw = UnsafeRawPointer(line)
        return raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == words.0
            && raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == words.1
            && raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self) == words.2
            && raw.loadUnaligned(fromByteOffset: 19, as: UInt64.self) == words.3
    }

    /// 19 decimal digits, or nil if any byte is not a digit.
    @inline(__always)
    static func parse19Digits(_ p: UnsafePointer<UInt8>) -> UInt64? {
        var head: UInt64 = 0
        for i in 0..<3 {
            let digit = p[i] &- UInt8(ascii: "0")
            guard digit <= 9 else { return nil }
            head = head &* 10 &+ UInt64(digit)
        }
        guard let high = parse8Digits(p + 3), let low = parse8Digits(p + 11) else { return nil }
        return head &* 10_000_000_000_000_000 &+ high &* 100_000_000 &+ low
    }

    /// Eight ASCII digits at once (the SWAR method simdjson uses).
    @inline(__always)
    static func parse8Digits(_ p: UnsafePointer<UInt8>) -> UInt64? {
        var value = UnsafeRawPointer(p).loadUnaligned(as: UInt64.self)
        let allDigits = ((value & 0xF0F0_F0F0_F0F0_F0F0) | (((value &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4))
            == 0x3333_3333_3333_3333
        guard allDigits else { return nil }
        value &-= 0x3030_3030_3030_3030
        value = value &* 10 &+ (value >> 8)
        let mask: UInt64 = 0x0000_00FF_0000_00FF
        value = (((value & mask) &* 0x000F_4240_0000_0064) &+ (((value >> 16) & mask) &* 0x0000_2710_0000_0001)) >> 32
        return value & 0xFFFF_FFFF
    }
}
