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

    func alerts(from sequence: UInt64, maxCount: Int) throws -> ForwardedBatch {
        var batch = ForwardedBatch()
        try journal.forEachRecord(from: sequence, maxCount: maxCount, maxBytes: 4 << 20) { recordSequence, _, payload in
            var frame = payload
            if frame.last == UInt8(ascii: "\n") { frame = UnsafeRawBufferPointer(rebasing: frame.dropLast()) }
            batch.append(sequence: recordSequence, severity: Self.severity(of: frame), frame: frame)
        }
        return batch
    }

    private static let severityKey = Array(#","severity":""#.utf8)

    /// The severity of an alert frame the daemon wrote (`AlertFrame`: the
    /// member follows `timestamp`, its value one of a few plain words),
    /// found by a scan instead of a parse: this runs once per forwarded
    /// alert. A frame without it is "unknown".
    static func severity(of frame: UnsafeRawBufferPointer) -> String {
        frame.withMemoryRebound(to: UInt8.self) { bytes in
            let key = severityKey
            var index = 0
            while index + key.count < bytes.count {
                if bytes[index] == key[0] && bytes[index..<index + key.count].elementsEqual(key) {
                    let start = index + key.count
                    var end = start
                    while end < bytes.count && bytes[end] != UInt8(ascii: "\"") && bytes[end] != UInt8(ascii: "\\") { end += 1 }
                    guard end < bytes.count, bytes[end] == UInt8(ascii: "\""), end > start else { return "unknown" }
                    return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
                }
                index += 1
            }
            return "unknown"
        }
    }
}
