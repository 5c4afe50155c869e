import Foundation
import Glibc

/// Waits for `condition` to hold, checking every 10 ms, at most `seconds`;
/// returns whether it held. The one polling helper: for state another
/// process or thread changes (a daemon's log, its status, a file), where
/// there is no event to block on.
public func eventually(within seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// The same for async tests: sleeps without holding a thread of the
/// cooperative pool, which the tests running beside this one need.
public func eventually(within seconds: Double = 10, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try condition()
}

/// Waits until `process` has exited, at most `seconds`; returns its status.
public func waitForExit(_ process: Process, within seconds: Double = 20, what: String? = nil) throws -> Int32 {
    guard eventually(within: seconds, { !process.isRunning }) else {
        throw TestFailure("\(what ?? process.executableURL?.lastPathComponent ?? "the process") did not exit within \(seconds) s")
    }
    return process.terminationStatus
}
