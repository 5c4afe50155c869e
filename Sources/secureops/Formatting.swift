import Glibc
import SecureOpsSystem
import SecureOpsWire

func monotonic() -> Double {
    SystemClock.monotonicSeconds()
}

func formatMilliseconds(_ seconds: Double) -> String {
    let tenths = Int((seconds * 10_000).rounded())
    return "\(tenths / 10).\(tenths % 10) ms"
}

func formatDuration(_ seconds: Double) -> String {
    let total = Int(seconds)
    let (days, hours, minutes, secs) = (total / 86400, total / 3600 % 24, total / 60 % 60, total % 60)
    if days > 0 { return "\(days)d \(hours)h \(minutes)m" }
    if hours > 0 { return "\(hours)h \(minutes)m \(secs)s" }
    if minutes > 0 { return "\(minutes)m \(secs)s" }
    return "\(secs)s"
}

/// `2026-11-29T04:27:13.123Z  HIGH      fs-watch  ssh key read  {"path":...}`
func formatAlert(_ alert: MonitorAlert) -> String {
    var line = "\(alert.timestamp)  \(alert.severity.rawValue.uppercased().padding(to: 8))  #\(alert.sequence)  \(sanitized(alert.source)): \(sanitized(alert.message))"
    if let details = alert.details { line += "  " + details.text }
    return line
}

/// Terminal output must not let an alert's text move the cursor or forge
/// lines: control characters are shown escaped.
func sanitized(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
            out += "\\u{\(String(scalar.value, radix: 16))}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

func formatAuditTable(_ report: AuditReport) -> String {
    let header = ["STATUS", "SEVERITY", "CHECK", "DETAIL"]
    let rows = report.checks.map { check in
        [check.status.rawValue.uppercased() + (check.fixed ? " (fixed)" : ""), check.severity.rawValue, check.id, sanitized(check.detail)]
    }
    var widths = header.map(\.count)
    for row in rows {
        for (index, cell) in row.enumerated() where index < 3 { widths[index] = max(widths[index], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in index < 3 ? cell.padding(to: widths[index]) : cell }.joined(separator: "  ")
    }
    var lines = [line(header)]
    lines += rows.map(line)
    let s = report.summary
    lines.append("")
    lines.append("\(report.checks.count) checks in \(report.durationMs) ms: \(s.pass) pass, \(s.warn) warn, \(s.fail) fail, \(s.error) error, \(s.skipped) skipped")
    return lines.joined(separator: "\n")
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
