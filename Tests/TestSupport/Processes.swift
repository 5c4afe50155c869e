import Foundation
import Glibc

/// Runs `executable` to completion with stdout and stderr together; kills
/// it (SIGKILL) and throws if it runs longer than `timeout` seconds.
public func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeout: Double = 30) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardError = pipe
    process.standardOutput = pipe
    try process.run()
    // Read on another thread: a full pipe would otherwise stall the child.
    let output = OutputCollector()
    let reader = Thread { output.set(pipe.fileHandleForReading.readDataToEndOfFile()) }
    reader.start()
    guard eventually(within: timeout, { !process.isRunning }) else {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout) s; killed")
    }
    process.waitUntilExit()
    _ = eventually(within: 10) { output.isSet }
    return (process.terminationStatus, String(decoding: output.data, as: UTF8.self))
}

/// What the reader thread read, handed to the test's thread.
private final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Data?
    func set(_ data: Data) { lock.withLock { value = data } }
    var isSet: Bool { lock.withLock { value != nil } }
    var data: Data { lock.withLock { value ?? Data() } }
}

/// A private directory under /tmp (short: a Unix socket path holds at most
/// 107 bytes), removed when the value goes away.
public final class ScratchDirectory {
    public let path: String

    public init(prefix: String = "so-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed (errno \(errno))") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func socket(_ name: String = "engine") -> String { path + "/\(name).sock" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs blocking `work` (a build, a compiler) on a thread of its own and
/// waits for it without holding a thread of the cooperative pool. Swift
/// Testing runs synchronous tests on that pool, which is as wide as the
/// machine (two threads here): a test that blocks one for the minute a
/// fresh `swift build` takes leaves every test queued behind it to run
/// out its time limit before it has started.
public func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Writes a secret file (a password, a token) as an operator would: mode
/// 0600, so the forwarder's checks accept it.
public func writeSecret(_ text: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw TestFailure("open \(path) failed (errno \(errno))") }
    defer { close(fd) }
    guard fchmod(fd, 0o600) == 0 else { throw TestFailure("fchmod \(path) failed (errno \(errno))") }
    let written = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == text.utf8.count else { throw TestFailure("write \(path) failed (errno \(errno))") }
}
