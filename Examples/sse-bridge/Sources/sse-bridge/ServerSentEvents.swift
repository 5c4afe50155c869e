import SecureOpsClient
import SecureOpsEngine

/// Turns subscription events into Server-Sent Events
/// (https://html.spec.whatwg.org/multipage/server-sent-events.html).
///
/// Every alert carries `id: <epoch>-<sequence>`, so a browser that
/// reconnects (EventSource does so by itself) sends it back in
/// `Last-Event-ID` and the bridge resumes right after it, in the same
/// daemon run, or from the start of a new one.
enum ServerSentEvents {
    /// Asks the browser to retry one second after a dropped stream.
    static let preamble = "retry: 1000\n\n"

    static func encode(_ event: SubscriptionEvent, epoch: StreamEpoch?) -> String {
        switch event {
        case .alert(let alert):
            var writer = JSONWriter(capacity: 512)
            IpcResponse.alert(alert).write(into: &writer)
            writer.bytes.removeLast()  // the frame's newline; data is one line
            let id = epoch.map { "\($0)-\(alert.sequence)" } ?? "\(alert.sequence)"
            return "id: \(id)\nevent: alert\ndata: \(String(decoding: writer.bytes, as: UTF8.self))\n\n"
        case .lagged(let skipped, let resumeAt):
            return "event: lagged\ndata: {\"skipped\":\(skipped),\"resumeAt\":\(resumeAt)}\n\n"
        case .disconnected(let reason):
            var writer = JSONWriter(capacity: 256)
            writer.string(reason.description)
            return "event: disconnected\ndata: {\"reason\":\(String(decoding: writer.bytes, as: UTF8.self))}\n\n"
        case .reconnecting(let attempt):
            return "event: reconnecting\ndata: {\"attempt\":\(attempt)}\n\n"
        case .reconnected(let after):
            return "event: reconnected\ndata: {\"resumingAfter\":\(after)}\n\n"
        case .restarted(let epoch):
            return "event: restarted\ndata: {\"epoch\":\(epoch.map { "\"\($0)\"" } ?? "null")}\n\n"
        }
    }

    /// Where to resume for a browser's `Last-Event-ID` (`<epoch>-<sequence>`):
    /// the sequence, if it belongs to the daemon run `epoch`.
    static func resumePoint(lastEventID: String?) -> (epoch: StreamEpoch, sequence: UInt64)? {
        guard let lastEventID, let dash = lastEventID.firstIndex(of: "-"),
              let epoch = StreamEpoch(String(lastEventID[..<dash])),
              let sequence = UInt64(lastEventID[lastEventID.index(after: dash)...])
        else { return nil }
        return (epoch, sequence)
    }
}
