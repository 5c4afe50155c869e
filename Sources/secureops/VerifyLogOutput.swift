import SecureOpsAuditLog
import SecureOpsJSON
import SecureOpsWire

/// `secureops verify-log` for people: one line when intact, the first bad
/// record and what is wrong with it otherwise.
func verifyLogText(_ report: AuditLogVerifier.Report) -> String {
    guard let problem = report.problem else {
        var line = "\(report.logPath): intact, \(report.records) record(s)"
        if report.records > 0 {
            line += " (seq 1–\(report.lastSeq), \(report.firstTime ?? "?") to \(report.lastTime ?? "?"))"
        }
        if let head = report.headSeq { line += "; end anchored by audit.head at seq \(head)" }
        for notice in report.notices { line += "\nnote: \(sanitized(notice))" }
        return line
    }
    return """
        \(report.logPath): NOT intact
        first bad record: \(sanitized(problem.description))
        \(report.records) record(s) before it verified\(report.records > 0 ? " (last: seq \(report.lastSeq) at \(report.lastTime ?? "?"))" : "")
        """
}

/// `secureops verify-log --json`.
func verifyLogJSON(_ report: AuditLogVerifier.Report) -> String {
    var writer = JSONWriter()
    writer.beginObject()
    writer.key("intact")
    writer.bool(report.isIntact)
    writer.key("log")
    writer.string(report.logPath)
    writer.key("records")
    writer.int(report.records)
    writer.key("lastSeq")
    writer.uint(report.lastSeq)
    writer.key("headSeq")
    if let head = report.headSeq { writer.uint(head) } else { writer.null() }
    writer.key("problem")
    if let problem = report.problem {
        writer.beginObject()
        writer.key("line")
        writer.int(problem.line)
        writer.key("seq")
        if let seq = problem.seq { writer.uint(seq) } else { writer.null() }
        writer.key("reason")
        writer.string(problem.reason)
        writer.endObject()
    } else {
        writer.null()
    }
    writer.key("notices")
    writer.beginArray()
    for notice in report.notices { writer.string(notice) }
    writer.endArray()
    writer.endObject()
    return String(decoding: writer.bytes, as: UTF8.self)
}
