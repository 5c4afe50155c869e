import SecureOpsEngine
import Glibc
import Histogram

/// Number formatting for tables and progress lines (no Foundation needed).
enum Format {
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (abs(value) * scale).rounded()
        let whole = Int(rounded / scale)
        let fraction = Int(rounded) - whole * Int(scale)
        var text = (value < 0 && rounded > 0 ? "-" : "") + String(whole)
        if decimals > 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: max(0, decimals - digits.count)) + digits
        }
        return text
    }

    /// 1234567 -> "1,234,567"
    static func grouped(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let digits = String(Int(value.rounded()))
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 && c != "-" { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }

    /// 1523000 -> "1.52 M"
    static func rate(_ value: Double) -> String {
        if value >= 1e6 { return fixed(value / 1e6, 2) + " M" }
        if value >= 1e3 { return fixed(value / 1e3, 1) + " k" }
        return fixed(value, 0)
    }

    static func milliseconds(_ nanos: UInt64) -> String { fixed(Double(nanos) / 1e6, 3) + " ms" }

    static func microseconds(_ nanos: UInt64) -> String {
        let us = Double(nanos) / 1e3
        return us >= 10_000 ? fixed(us / 1e3, 1) + " ms" : fixed(us, 1) + " µs"
    }

    static func mebibytes(_ bytes: Int) -> String { fixed(Double(bytes) / 1_048_576, 1) + " MiB" }

    static func leftPad(_ text: String, _ width: Int) -> String {
        text.count >= width ? " " + text : String(repeating: " ", count: width - text.count) + text
    }

    static func rightPad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}

/// A run's results: printed as an aligned table for people, or as one JSON
/// object (`--json`) for scripts. Fields keep their insertion order.
struct Report {
    enum Value {
        case int(Int64)
        case double(Double)
        case string(String)
        case bool(Bool)
        case null
    }

    let title: String
    private(set) var fields: [(key: String, value: Value)] = []
    private(set) var lines: [(label: String, text: String)] = []

    init(title: String) { self.title = title }

    mutating func set(_ key: String, _ value: Value) {
        if let index = fields.firstIndex(where: { $0.key == key }) { fields[index].value = value } else { fields.append((key, value)) }
    }

    mutating func set(_ key: String, _ value: Int) { set(key, .int(Int64(value))) }
    mutating func set(_ key: String, _ value: UInt64) { set(key, .int(Int64(clamping: value))) }
    mutating func set(_ key: String, _ value: Double) { set(key, .double(value)) }
    mutating func set(_ key: String, _ value: String?) { set(key, value.map(Value.string) ?? .null) }
    mutating func set(_ key: String, _ value: Bool) { set(key, .bool(value)) }
    mutating func set(_ key: String, _ value: Int?) { set(key, value.map { .int(Int64($0)) } ?? .null) }
    mutating func set(_ key: String, _ value: Double?) { set(key, value.map(Value.double) ?? .null) }

    /// One row of the human-readable table.
    mutating func line(_ label: String, _ text: String) { lines.append((label, text)) }

    /// The latency fields every mode reports, in microseconds.
    mutating func latency(_ histogram: Histogram<UInt64>) {
        let empty = histogram.totalCount == 0
        func us(_ p: Double) -> Double? { empty ? nil : Double(histogram.valueAtPercentile(p)) / 1e3 }
        set("latencySamples", histogram.totalCount)
        set("p50Us", us(50))
        set("p90Us", us(90))
        set("p99Us", us(99))
        set("p999Us", us(99.9))
        set("maxUs", empty ? nil : Double(histogram.max) / 1e3)
        if !empty {
            let parts = [50.0, 90, 99, 99.9].map { Format.microseconds(histogram.valueAtPercentile($0)) }
            line("latency p50 / p90 / p99 / p99.9", parts.joined(separator: " / "))
            line("latency max", Format.microseconds(histogram.max))
        }
    }

    func printTable() {
        print(title)
        let width = (lines.map(\.label.count).max() ?? 0) + 2
        for entry in lines {
            print("  " + Format.rightPad(entry.label, width) + entry.text)
        }
    }

    /// One JSON object, written with the engine's own encoder (strings
    /// escaped per RFC 8259).
    func printJSON() {
        var writer = JSONWriter(capacity: 2048)
        writer.beginObject()
        for field in fields {
            writer.key(field.key)
            switch field.value {
            case .int(let v): writer.int(Int(v))
            case .double(let v): writer.double(v)
            case .string(let v): writer.string(v)
            case .bool(let v): writer.bool(v)
            case .null: writer.null()
            }
        }
        writer.endObject()
        print(String(decoding: writer.bytes, as: UTF8.self))
    }
}
