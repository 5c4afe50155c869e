import Foundation
import Glibc

/// A subscriber swarm in its own process (Fixtures/fanout-check.c): N
/// connections subscribe, then every alert is checked for order and
/// exactly-once delivery. Its own process, so 19,000 connections do not eat
/// the test runner's descriptors.
final class FanoutSwarm: @unchecked Sendable {
    struct Summary: Decodable {
        var subscribers: Int
        var received: Int
        var lost: Int
        var duplicated: Int
        var reordered: Int
        var lagNotices: Int
        var skipped: Int
        var closed: Int
        var seconds: Double
    }

    let process = Process()
    private let output = Pipe()
    private var buffered = ""
    /// The `next` sequence the first subscriber was told.
    private(set) var firstNext: UInt64 = 0

    init(socket: String, subscribers: Int, expectedAlerts: Int, since: UInt64? = nil, timeout: Double = 120, slowReaderMilliseconds: Int? = nil) throws {
        let tool = try compileFixture("fanout-check")
        process.executableURL = URL(fileURLWithPath: tool)
        var arguments = [socket, String(subscribers), String(expectedAlerts), "--timeout", String(timeout)]
        if let since { arguments += ["--since", String(since)] }
        if let slowReaderMilliseconds { arguments += ["--slow-reader", String(slowReaderMilliseconds)] }
        process.arguments = arguments
        process.standardOutput = output
        try process.run()
    }

    deinit {
        killAndWait(process)
    }

    /// Waits until every subscriber has its `ok`.
    func waitUntilSubscribed(timeout: Double = 120) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = nextLine(), line.hasPrefix("READY ") {
                firstNext = UInt64(line.dropFirst(6)) ?? 0
                return
            }
            if !process.isRunning { throw TestFailure("fanout-check exited before all subscribed") }
        }
        throw TestFailure("subscribers not ready within \(timeout) s")
    }

    /// Waits for the swarm to finish and returns its summary.
    func finish() throws -> Summary {
        process.waitUntilExit()
        while let line = nextLine() {
            if line.hasPrefix("{") {
                return try JSONDecoder().decode(Summary.self, from: Data(line.utf8))
            }
        }
        throw TestFailure("fanout-check printed no summary (status \(process.terminationStatus))")
    }

    private func nextLine() -> String? {
        while true {
            if let newline = buffered.firstIndex(of: "\n") {
                let line = String(buffered[..<newline])
                buffered.removeSubrange(...newline)
                return line
            }
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { return nil }
            buffered += String(decoding: data, as: UTF8.self)
        }
    }
}

/// Publishes `count` alerts from its own process, pipelined `window` deep.
func publishInBulk(socket: String, count: Int, window: Int = 64, size: Int = 256) throws {
    let tool = try compileFixture("fanout-check")
    let (status, output) = try run(tool, ["publish", socket, String(count), String(window), String(size)])
    guard status == 0 else { throw TestFailure("bulk publish failed: \(output)") }
}

/// The resident set size of a process, in bytes.
func residentBytes(pid: Int32) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let digits = line.filter(\.isNumber)
        return (Int(digits) ?? 0) * 1024
    }
    return 0
}

/// How many descriptors a process has open.
func openDescriptors(pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}

/// What each open descriptor of `pid` points at (`socket:[…]`, a path,
/// `anon_inode:[io_uring]`…), sorted: for messages that name a leak.
func descriptorTargets(pid: Int32) -> [String] {
    let directory = "/proc/\(pid)/fd"
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0) }.sorted()
}

/// Sanitizer runs (`make test-asan`, `make test-tsan`) inflate memory many
/// times over; memory bounds are only checked without them.
let underSanitizer = ProcessInfo.processInfo.environment["SECUREOPS_SANITIZER"] != nil
