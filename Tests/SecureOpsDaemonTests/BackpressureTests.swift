import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// A client that sends faster than it reads is throttled through the
/// kernel's socket buffers, not buffered without bound by the daemon.
@Suite("Back-pressure")
struct BackpressureTests {
    @Test func aClientThatNeverReadsItsRepliesIsThrottledAndLosesNothing() throws {
        let daemon = try DaemonProcess()
        let client = try RawClient(path: daemon.socketPath)
        let flags = fcntl(client.fd, F_GETFL)
        _ = fcntl(client.fd, F_SETFL, flags | O_NONBLOCK)
        // `status` replies are ~600 bytes for a 18-byte request: replies
        // outgrow requests 30 to 1.
        let request = Array("{\"type\":\"status\"}\n".utf8)
        var sent = 0
        var blockedSince: Date?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let n = request.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n == request.count {
                sent += 1
                blockedSince = nil
            } else {
                #expect(n < 0 && errno == EAGAIN, "a partial or failed write: \(n)")
                if n > 0 { break }
                if blockedSince == nil { blockedSince = Date() }
                if Date().timeIntervalSince(blockedSince!) > 1 { break }
                usleep(1000)
            }
        }
        #expect(blockedSince != nil, "the daemon must stop reading a client that does not read its replies")
        // Others are still served while this client is throttled, and the
        // daemon holds at most its output cap (4 MiB) for it.
        try daemon.connect().ping()
        if !underSanitizer { #expect(residentBytes(pid: daemon.pid) < 96 << 20) }
        // Now read everything: one reply per request sent, none lost.
        _ = fcntl(client.fd, F_SETFL, flags)
        let replies = client.readLines(sent, timeout: 30)
        #expect(replies.count == sent)
        #expect(replies.allSatisfy { $0.hasPrefix(#"{"type":"ok","running":true"#) })
    }
}
