import SecureOpsEngine

/// The request frames the benchmarks decode and the alert frames they
/// encode. Deterministic (seeded), so numbers are comparable run to run.
public enum BenchmarkFrames {
    /// The realistic mix, 200 frames: 40% `ping`/`status`, 50% `publish`
    /// with a `details` object of 2–6 keys (escapes and non-ASCII text), 10%
    /// the other request types. Shuffled with a fixed seed.
    public static let mix: [[UInt8]] = {
        var rng = Generator(seed: 0x5EC0_0B5)
        var frames: [String] = []
        for i in 0..<80 { frames.append(i % 2 == 0 ? #"{"type":"ping"}"# : #"{"type":"status"}"#) }
        for _ in 0..<100 { frames.append(publish(&rng)) }
        let others = [
            #"{"type":"audit","deep":true,"fix":false,"json":true}"#,
            #"{"type":"kill","reason":"manual trip"}"#,
            #"{"type":"kill","reason":null}"#,
            #"{"type":"subscribe"}"#,
            #"{"type":"subscribe","since":41}"#,
            #"{"type":"alerts","limit":10}"#,
            #"{"type":"reloadPolicy"}"#,
            #"{"type":"audit"}"#,
            #"{"type":"alerts"}"#,
            #"{"type":"subscribe","since":18446744073709551615}"#,
        ]
        for i in 0..<20 { frames.append(others[i % others.count]) }
        frames.shuffle(using: &rng)
        return frames.map { Array($0.utf8) }
    }()

    public static let ping: [UInt8] = Array(#"{"type":"ping"}"#.utf8)

    /// One typical publish frame.
    public static let publish: [UInt8] = Array(
        #"{"type":"publish","alert":{"severity":"high","source":"fs-watch","message":"ssh key read by \"sshd\" — pid 4242","details":{"path":"/home/andré/.ssh/id_ed25519","uid":1000,"note":"first line\nsecond line","pid":4242}}}"#.utf8)

    static func publish(_ rng: inout Generator) -> String {
        let severities = ["info", "low", "medium", "high", "critical"]
        let sources = ["fs-watch", "net-monitor", "auth-log", "process-audit", "usb"]
        let messages = [
            #"ssh key read by \"sshd\""#, "connexion refusée depuis 10.0.0.7", "unexpected setuid binary",
            #"login failure for user \"root\"\n3 attempts"#, "Größe überschritten: 12 MiB", "USB device 0781:5581 attached",
            "process \u{1F50D} spawned a shell", #"tab\tseparated\tfields"#,
        ]
        let keys = ["path", "user", "pid", "uid", "host", "port", "cmdline", "note", "count", "tags"]
        let values = [
            #""/home/andré/.ssh/id_ed25519""#, #""root""#, "4242", "1000", #""srv-01.example""#, "22",
            #""/usr/bin/python3 -c \"import os\"""#, #""first line\nsecond line""#, "17", #"["a","b"]"#,
            #""日本語のテキスト""#, "true", "null", "3.25",
        ]
        var details = "{"
        let count = 2 + Int(rng.next() % 5)
        var used = Set<String>()
        while used.count < count {
            let key = keys[Int(rng.next() % UInt64(keys.count))]
            guard used.insert(key).inserted else { continue }
            if used.count > 1 { details += "," }
            details += "\"\(key)\":" + values[Int(rng.next() % UInt64(values.count))]
        }
        details += "}"
        let severity = severities[Int(rng.next() % 5)]
        let source = sources[Int(rng.next() % 5)]
        let message = messages[Int(rng.next() % UInt64(messages.count))]
        return #"{"type":"publish","alert":{"severity":""# + severity + #"","source":""# + source
            + #"","message":""# + message + #"","details":"# + details + "}}"
    }

    /// Alert frames the daemon would push: the inputs of `encodeAlert`.
    public struct Alert: Sendable {
        public var sequence: UInt64
        public var timestamp: Int64
        public var severity: String
        public var source: String
        public var message: String
        public var details: RawJSON
    }

    public static let alerts: [Alert] = {
        var rng = Generator(seed: 42)
        let decoder = FastJSONDecoder()
        var out: [Alert] = []
        for i in 0..<64 {
            let frame = publish(&rng)
            guard case .publish(let input) = try! decoder.decode(IpcRequest.self, from: frame) else { continue }
            out.append(Alert(sequence: UInt64(i + 1), timestamp: 1_795_926_433_123 + Int64(i) * 1_000,
                             severity: input.severity.rawValue, source: input.source, message: input.message,
                             details: input.details ?? RawJSON(.null)))
        }
        return out
    }()

    /// Writes one alert frame, newline-terminated, the way the daemon does.
    @inline(__always)
    public static func encodeAlert(_ alert: Alert, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("type"); writer.string("alert")
        writer.key("sequence"); writer.uint(alert.sequence)
        writer.key("timestamp"); writer.timestamp(millisecondsSinceEpoch: alert.timestamp)
        writer.key("severity"); writer.string(alert.severity)
        writer.key("source"); writer.string(alert.source)
        writer.key("message"); writer.string(alert.message)
        writer.key("details"); writer.raw(alert.details)
        writer.endObject()
        writer.newline()
    }
}

/// SplitMix64.
struct Generator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
