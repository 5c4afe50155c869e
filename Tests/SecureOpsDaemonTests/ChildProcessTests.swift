import Foundation
import Glibc
import Testing

/// The test support's own promise: stopping a child never hangs the suite.
@Suite("Child processes in tests", .timeLimit(.minutes(2)))
struct ChildProcessTests {
    /// Foundation notices a child's exit when a socket the child inherited
    /// reaches end-of-file; here a grandchild keeps that socket open after
    /// the child is killed, so Foundation does not notice (its
    /// `waitUntilExit()` would wait for the grandchild). `killAndWait` asks
    /// the kernel instead and returns.
    @Test func killAndWaitReturnsWhileAGrandchildHoldsFoundationsExitSocket() throws {
        let pidFile = NSTemporaryDirectory() + "secureops-grandchild-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "sleep 60 & echo $! > \(pidFile); exec sleep 60"]
        try process.run()
        var grandchild: Int32 = 0
        for _ in 0..<500 where grandchild == 0 {
            grandchild = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            if grandchild == 0 { usleep(10_000) }
        }
        #expect(grandchild > 0)
        defer { if grandchild > 0 { kill(grandchild, SIGKILL) } }

        let started = Date()
        killAndWait(process)
        #expect(childHasExited(pid: process.processIdentifier))
        #expect(Date().timeIntervalSince(started) < 5, "the kernel's answer, not Foundation's, ends the wait")
    }
}
