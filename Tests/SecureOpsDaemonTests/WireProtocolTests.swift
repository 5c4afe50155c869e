import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// Every request type of WIRE.md answered over a real socket, byte for byte
/// where the contract fixes the bytes.
@Suite("Wire protocol", .timeLimit(.minutes(2)))
struct WireProtocolTests {
    @Test func pingAnswersExactlyTheOkFrame() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"ping\"}\n")
        #expect(client.readLines(1) == [#"{"type":"ok"}"#])
    }

    @Test func statusReportsEveryFieldOfMonitorStatus() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"status\"}\n")
        let line = try #require(client.readLines(1).first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "ok")
        for key in ["running", "killed", "killReason", "uptimeSecs", "pid", "version", "connections", "subscribers",
                    "alertsPublished", "alertsRetained", "lastSequence", "lagEvents", "policyVersion"] {
            #expect(object.keys.contains(key), "status lacks \(key)")
        }
        #expect(object["killReason"] is NSNull)
        #expect(object["running"] as? Bool == true)
        #expect(object["pid"] as? Int == Int(daemon.pid))
        #expect(object["connections"] as? Int == 1)
    }

    @Test func publishAssignsIncreasingSequencesAndAlertsReturnsThemInOrder() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        var sequences: [UInt64] = []
        for index in 0..<5 {
            sequences.append(try connection.publish(AlertInput(
                severity: .medium, source: "test", message: "alert \(index)",
                details: try RawJSON(validating: Array(#"{"index":\#(index),"text":"ü\n\"x\""}"#.utf8)))))
        }
        #expect(sequences == [1, 2, 3, 4, 5])
        let alerts = try connection.alerts(limit: 3)
        #expect(alerts.map(\.sequence) == [3, 4, 5])
        #expect(alerts.map(\.message) == ["alert 2", "alert 3", "alert 4"])
        #expect(alerts[0].details?.text == #"{"index":2,"text":"ü\n\"x\""}"#)
        #expect(alerts.allSatisfy { $0.timestamp.count == 24 && $0.timestamp.hasSuffix("Z") })
        #expect(try connection.alerts().count == 5)
        #expect(try connection.alerts(limit: 0).isEmpty)
    }

    @Test func alertsWithoutLimitReturnAtMostOneHundred() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        for index in 0..<120 {
            try connection.send(.publish(AlertInput(severity: .info, source: "bulk", message: "\(index)")))
        }
        for _ in 0..<120 { _ = try connection.reply() }
        let alerts = try connection.alerts()
        #expect(alerts.count == 100)
        #expect(alerts.first?.sequence == 21)
        #expect(alerts.last?.sequence == 120)
    }

    @Test func alertFrameMatchesTheContractByteForByte() throws {
        let daemon = try DaemonProcess()
        let subscriber = try RawClient(path: daemon.socketPath)
        try subscriber.write("{\"type\":\"subscribe\"}\n")
        #expect(subscriber.readLines(1) == [#"{"type":"ok","subscribed":true,"next":1}"#])
        let publisher = try RawClient(path: daemon.socketPath)
        try publisher.write(#"{"type":"publish","alert":{"severity":"high","source":"fs-watch","message":"ssh key read","details":{"path":"/home/a/.ssh/id_ed25519"}}}"# + "\n")
        #expect(publisher.readLines(1) == [#"{"type":"ok","sequence":1}"#])
        let line = try #require(subscriber.readLines(1).first)
        // WIRE.md's fields byte for byte, then the origin extension: the
        // publisher as the kernel knows it (this test process).
        let pattern = #/^\{"type":"alert","sequence":1,"timestamp":"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z","severity":"high","source":"fs-watch","message":"ssh key read","details":\{"path":"/home/a/\.ssh/id_ed25519"\},"origin":\{"uid":(\d+),"pid":(\d+)\}\}$/#
        let match = try #require(line.wholeMatch(of: pattern), "got \(line)")
        #expect(match.1 == "\(getuid())")
        #expect(match.2 == "\(getpid())")
    }

    @Test func alertWithoutDetailsCarriesNull() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        _ = try connection.publish(AlertInput(severity: .low, source: "s", message: "m"))
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"alerts\",\"limit\":null}\n")
        let line = try #require(client.readLines(1).first)
        #expect(line.hasSuffix(#""source":"s","message":"m","details":null,"origin":{"uid":\#(getuid()),"pid":\#(getpid())}}]}"#), "got \(line)")
    }

    @Test func subscribeWithSinceReplaysRetainedAlertsThenContinuesLive() throws {
        let daemon = try DaemonProcess()
        let publisher = try daemon.connect()
        for index in 1...10 {
            _ = try publisher.publish(AlertInput(severity: .info, source: "replay", message: "\(index)"))
        }
        let subscriber = try daemon.connect()
        let next = try subscriber.subscribe(since: 6)
        #expect(next == 11)
        for index in 11...13 {
            _ = try publisher.publish(AlertInput(severity: .info, source: "replay", message: "\(index)"))
        }
        var received: [UInt64] = []
        while received.count < 7 {
            guard case .alert(let alert)? = try subscriber.nextPush(timeout: 10) else { break }
            received.append(alert.sequence)
        }
        #expect(received == Array(7...13))
    }

    @Test func subscribeWithoutSinceStartsAtTheNextAlert() throws {
        let daemon = try DaemonProcess()
        let publisher = try daemon.connect()
        _ = try publisher.publish(AlertInput(severity: .info, source: "before", message: "old"))
        let subscriber = try daemon.connect()
        #expect(try subscriber.subscribe() == 2)
        _ = try publisher.publish(AlertInput(severity: .info, source: "after", message: "new"))
        guard case .alert(let alert)? = try subscriber.nextPush(timeout: 10) else {
            Issue.record("no alert")
            return
        }
        #expect(alert.sequence == 2)
        #expect(alert.source == "after")
    }

    @Test func killTripsTheSwitchBroadcastsACriticalAlertAndShowsInStatus() throws {
        let daemon = try DaemonProcess()
        let subscriber = try daemon.connect()
        _ = try subscriber.subscribe()
        let operator_ = try daemon.connect()
        let sequence = try operator_.kill(reason: "manual trip")
        guard case .alert(let alert)? = try subscriber.nextPush(timeout: 10) else {
            Issue.record("subscriber got no kill alert")
            return
        }
        #expect(alert.sequence == sequence)
        #expect(alert.severity == .critical)
        #expect(alert.message.contains("manual trip"))
        let details = try #require(alert.details?.value)
        #expect(details["reason"] == .string("manual trip"))
        #expect(details["uid"] == .number(JSONNumber(Int(getuid()))))
        #expect(details["pid"] == .number(JSONNumber(Int(getpid()))))
        let status = try operator_.status()
        #expect(status.killed)
        #expect(status.killReason == "manual trip")
        #expect(daemon.log.contains("kill switch tripped"))
    }

    @Test func killWithNullReasonIsAccepted() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"kill\",\"reason\":null}\n")
        let line = try #require(client.readLines(1).first)
        #expect(line.wholeMatch(of: #/\{"type":"ok","killed":true,"sequence":1\}/#) != nil, "got \(line)")
    }

    @Test func auditAnswersAReportWithSummary() throws {
        let daemon = try DaemonProcess()
        let connection = try daemon.connect()
        let report = try connection.audit(AuditOptions(deep: true, fix: false, json: true))
        #expect(report.deep)
        #expect(report.checks.count >= 8)
        #expect(report.summary.pass + report.summary.warn + report.summary.fail + report.summary.error + report.summary.skipped == report.checks.count)
        #expect(report.checks.contains { $0.id == "socket-permissions" && $0.status == .pass })
    }

    @Test func reloadPolicyWithoutPolicyFileAnswersTheBuiltInVersion() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write("{\"type\":\"reloadPolicy\"}\n")
        #expect(client.readLines(1) == [#"{"type":"ok","policyVersion":1}"#])
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAroundAnOffloadedHandler() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        // audit runs on the Dispatch pool and finishes after the pings that
        // follow it would; the replies must still come back in order.
        var frames = ""
        for index in 0..<50 {
            frames += index % 10 == 5 ? "{\"type\":\"audit\",\"deep\":true}\n" : "{\"type\":\"ping\"}\n"
            if index == 20 { frames += "{\"type\":\"reloadPolicy\"}\n" }
        }
        try client.write(frames)
        let lines = client.readLines(51)
        #expect(lines.count == 51)
        var expected: [String] = []
        for index in 0..<50 {
            expected.append(index % 10 == 5 ? "audit" : "ping")
            if index == 20 { expected.append("reload") }
        }
        for (line, kind) in zip(lines, expected) {
            switch kind {
            case "audit": #expect(line.hasPrefix(#"{"type":"ok","startedAt":"#), "expected an audit report, got \(line.prefix(60))")
            case "reload": #expect(line == #"{"type":"ok","policyVersion":1}"#)
            default: #expect(line == #"{"type":"ok"}"#)
            }
        }
    }

    /// Found trying the daemon against the contract: the decoder kept the
    /// last of two `type` keys, so a frame that reads as `ping` tripped
    /// the kill switch. A repeated key is an error now, and nothing runs.
    @Test func aFrameWithTwoTypesIsAnErrorAndTripsNothing() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        try client.write(#"{"type":"ping","type":"kill"}"# + "\n" + #"{"type":"alerts","limit":-1}"# + "\n")
        let lines = client.readLines(2)
        #expect(lines == [
            #"{"type":"err","message":"type: duplicate key \"type\": a key may appear only once in an object"}"#,
            #"{"type":"err","message":"limit: expected an integer between 0 and 18446744073709551615, found -1"}"#,
        ])
        #expect(try daemon.connect().status().killed == false)
    }
}
