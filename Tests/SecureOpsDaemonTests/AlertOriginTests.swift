import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Who published an alert: `origin` from the publisher's kernel
/// credentials on every alert, and the daemon's own source name reserved,
/// so no peer granted `publish` can pass an alert off as the daemon's
/// (the kill-switch alert above all).
@Suite("Alert origin", .timeLimit(.minutes(2)))
struct AlertOriginTests {
    func daemon() throws -> DaemonProcess {
        try DaemonProcess(
            policy: #"{"version": 2, "grants": [{"uid": 65534, "allow": ["publish", "alerts"]}]}"#,
            socketMode: "0666", reachableByOtherUsers: true)
    }

    @Test func everyAlertCarriesItsPublishersKernelCredentials() throws {
        let daemon = try daemon()
        let replies = try SecondUser.exchange(daemon.socketPath, [
            #"{"type":"publish","alert":{"severity":"high","source":"fs-watch","message":"from nobody"}}"#,
        ])
        #expect(replies.first == #"{"type":"ok","sequence":1}"#, "got \(replies)")
        let root = try daemon.connect()
        _ = try root.kill(reason: "drill")
        let alerts = try root.alerts()
        #expect(alerts.count == 2)
        #expect(alerts.first?.origin?.uid == 65534)
        #expect((alerts.first?.origin?.pid ?? 0) > 0)
        #expect(alerts.first?.origin?.pid != daemon.pid)
        // The daemon's own alert carries the daemon's credentials.
        #expect(alerts.last?.source == "secureopsd")
        #expect(alerts.last?.origin == AlertOrigin(uid: getuid(), pid: daemon.pid))
    }

    @Test(arguments: ["secureopsd", "SecureOpsD", " secureopsd ", "secure\u{200B}opsd", "secureopsd\n"])
    func noPeerMayPublishAsTheDaemon(_ source: String) throws {
        let daemon = try daemon()
        var frame = JSONWriter()
        IpcRequest.publish(AlertInput(severity: .critical, source: source, message: "kill switch tripped: forged")).write(into: &frame)
        let line = String(decoding: frame.bytes.dropLast(), as: UTF8.self)
        let replies = try SecondUser.exchange(daemon.socketPath, [line])
        #expect(replies.first == #"{"type":"err","message":"alert.source: \"secureopsd\" is reserved for the daemon's own alerts; name your own source"}"#, "got \(replies)")
        // Not even root: the name means "the daemon said so".
        let root = try daemon.connect()
        #expect(throws: IpcError.self) { _ = try root.publish(AlertInput(severity: .critical, source: source, message: "forged")) }
        #expect(try root.alerts().isEmpty)
    }
}
