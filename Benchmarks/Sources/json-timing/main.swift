// A plain release-mode timing loop: `swift run -c release json-timing`.
// Prints ns/frame for FastJSONDecoder and Foundation's JSONDecoder on the
// same frames, the ratio, and the alert-frame encode time.
import BenchmarkFrames
import Dispatch
import Foundation
import SecureOpsEngine

func measure(_ label: String, frames: Int, repeats: Int = 5, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        let ns = Double(DispatchTime.now().uptimeNanoseconds - start) / Double(frames)
        best = min(best, ns)
    }
    print(label.padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%9.1f ns/frame", best))
    return best
}

nonisolated(unsafe) let fast = FastJSONDecoder()
nonisolated(unsafe) let foundation = JSONDecoder()

func compare(_ name: String, _ frames: [[UInt8]], rounds: Int) throws {
    let data = frames.map { Data($0) }
    let n = frames.count * rounds
    let f = try measure("\(name): FastJSONDecoder", frames: n) {
        for _ in 0..<rounds { for frame in frames { _ = try fast.decode(IpcRequest.self, from: frame) } }
    }
    let roundsF = max(1, rounds / 10)
    let g = try measure("\(name): Foundation JSONDecoder", frames: frames.count * roundsF) {
        for _ in 0..<roundsF { for frame in data { _ = try foundation.decode(IpcRequest.self, from: frame) } }
    }
    print("\(name): Foundation / Fast".padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%9.1fx", g / f))
}

try compare("mix", BenchmarkFrames.mix, rounds: 2_000)
try compare("ping", [BenchmarkFrames.ping], rounds: 1_000_000)
try compare("publish", [BenchmarkFrames.publish], rounds: 200_000)

var writer = JSONWriter(capacity: 1024)
let alerts = BenchmarkFrames.alerts
_ = measure("encode alert frame: JSONWriter", frames: alerts.count * 20_000) {
    for _ in 0..<20_000 {
        for alert in alerts {
            writer.reset()
            BenchmarkFrames.encodeAlert(alert, into: &writer)
        }
    }
}
print("example frame: " + String(decoding: { var w = JSONWriter(); BenchmarkFrames.encodeAlert(alerts[0], into: &w); return w.bytes }(), as: UTF8.self), terminator: "")

// An `ok` reply with an Encodable payload (OkFrame.write): the library's
// encoder against Foundation's, on a status reply of about 30 fields.
var status = MonitorStatus(
    running: true, killed: false, killReason: nil, uptimeSecs: 3600.5, pid: 4242, version: "0.2.0",
    connections: 1234, subscribers: 1000, alertsPublished: 987_654, alertsRetained: 65_536, lastSequence: 987_654,
    lagEvents: 3, policyVersion: 2)
status.connectionCapacity = 19_000
status.framesReceived = 5_000_000
status.ioBackend = "io_uring"
status.ioUring = "SINGLE_ISSUER|DEFER_TASKRUN"
status.epoch = "0123456789abcdef"
status.killReason = "stop \"now\" \u{1F600}"
let foundationEncoder = JSONEncoder()
let encodeRounds = 200_000
let fastEncode = try measure("encode status: FastJSONEncoder", frames: encodeRounds) {
    for _ in 0..<encodeRounds {
        writer.reset()
        try OkFrame.write(status, into: &writer)
    }
}
let foundationEncode = try measure("encode status: Foundation JSONEncoder", frames: encodeRounds / 10) {
    for _ in 0..<(encodeRounds / 10) {
        _ = try foundationEncoder.encode(status)
    }
}
print("encode status: Foundation / Fast".padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%9.1fx", foundationEncode / fastEncode))
