import SecureOpsEngine
import SecureOpsForwarder

/// The journal as the forwarder reads it: each alert's frame as
/// subscribers receive it, without its newline, and its severity (the
/// subject's last token).
final class JournalForwardingSource: ForwardingSource {
    let journal: Journal

    init(journal: Journal) {
        self.journal = journal
    }

    func records(from sequence: UInt64, maxCount: Int) throws -> [ForwardedAlert] {
        let decoder = FastJSONDecoder()
        return try journal.records(from: sequence, maxCount: maxCount, maxBytes: 4 << 20).map { record in
            var frame = record.payload
            if frame.last == UInt8(ascii: "\n") { frame.removeLast() }
            // Every journaled frame is an alert frame the daemon wrote.
            let severity = (try? decoder.decode(SeverityOnly.self, from: frame).severity) ?? "unknown"
            return ForwardedAlert(sequence: record.sequence, severity: severity, frame: frame)
        }
    }

    private struct SeverityOnly: Decodable {
        var severity: String
    }
}
