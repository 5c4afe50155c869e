import Foundation
import Testing
import SecureOpsEngine

/// Helpers for the control-plane tests: a second real uid (65534 via
/// setpriv), policy files, and reading the signed audit log back.
enum SecondUser {
    static let uid: UInt32 = 65534

    /// setpriv arguments for uid/gid 65534 with the given supplementary groups.
    static func setpriv(groups: [UInt32] = []) -> [String] {
        let groupArgument = groups.isEmpty ? "--clear-groups" : "--groups=" + groups.map(String.init).joined(separator: ",")
        return ["--reuid=\(uid)", "--regid=\(uid)", groupArgument]
    }

    /// Runs the `line-client` fixture as uid 65534: sends each line on one
    /// connection and returns the reply lines, ending with "EOF" when the
    /// daemon closed the connection and "OPEN" when it did not.
    static func exchange(_ socket: String, _ lines: [String], groups: [UInt32] = []) throws -> [String] {
        let client = try compileFixture("line-client")
        let (status, output) = try run("/usr/bin/setpriv", setpriv(groups: groups) + [client, socket] + lines)
        guard status == 0 else { throw TestFailure("line-client exited \(status): \(output)") }
        return output.split(separator: "\n").map(String.init)
    }

    /// Starts the same client in the background (e.g. to hold a connection).
    static func start(_ socket: String, _ lines: [String]) throws -> (Process, Pipe) {
        let client = try compileFixture("line-client")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = setpriv() + [client, socket] + lines
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        return (process, pipe)
    }

    /// Connections uid 65534 holds open (the hold-connections fixture):
    /// how many the daemon answered and how many it refused; they stay open
    /// until `release()`.
    final class HeldConnections {
        let process: Process
        let input: Pipe
        let answered: Int
        let refused: Int
        let firstRefusal: String

        init(socket: String, count: Int) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = SecondUser.setpriv() + [try compileFixture("hold-connections"), socket, String(count)]
            input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            var text = ""
            let reader = output.fileHandleForReading
            while text.split(separator: "\n", omittingEmptySubsequences: false).count < 3 {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let counts = lines.first?.split(separator: " ") ?? []
            guard counts.count == 4, let answered = Int(counts[1]), let refused = Int(counts[3]) else {
                throw TestFailure("hold-connections printed \(text)")
            }
            self.answered = answered
            self.refused = refused
            firstRefusal = lines.count > 1 ? lines[1] : ""
        }

        func release() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }

        deinit { killAndWait(process) }
    }

    static func output(of started: (Process, Pipe)) -> [String] {
        let data = started.1.fileHandleForReading.readDataToEndOfFile()
        started.0.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

/// A new private directory under /tmp (mode 0700).
func makeTemporaryDirectory(_ prefix: String = "secureops-test") throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed: \(String(cString: strerror(errno)))") }
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Writes an executable `stop-agent` script (`exit 0`, mode 0755) into
/// `directory`, for policies' onKill; returns its path.
@discardableResult
func writeStopAgent(in directory: String, body: String = "exit 0\n") throws -> String {
    let program = directory + "/stop-agent"
    try ("#!/bin/sh\n" + body).write(toFile: program, atomically: false, encoding: .utf8)
    chmod(program, 0o755)
    return program
}

/// Replaces a policy file the way an operator's tooling should: a new file
/// renamed over the old one, mode 0644, so the daemon never reads half.
func replacePolicy(_ path: String, with text: String) throws {
    let temporary = path + ".new"
    try text.write(toFile: temporary, atomically: false, encoding: .utf8)
    chmod(temporary, 0o644)
    guard rename(temporary, path) == 0 else { throw TestFailure("rename \(temporary): \(String(cString: strerror(errno)))") }
}

/// The records of a state directory's audit log, parsed.
func auditRecords(_ stateDirectory: String) throws -> [JSONObject] {
    let text = try String(contentsOfFile: stateDirectory + "/audit.log", encoding: .utf8)
    return try text.split(separator: "\n").map { line in
        guard case .object(let object) = try JSONValue(parsing: String(line)) else { throw TestFailure("not an object: \(line)") }
        return object
    }
}

/// The `fields` of every record of `event`.
func auditFields(_ stateDirectory: String, event: String) throws -> [JSONObject] {
    try auditRecords(stateDirectory).compactMap { record in
        guard record["event"] == .string(event), case .object(let fields)? = record["fields"] else { return nil }
        return fields
    }
}

/// Polls until the audit log holds a record of `event` (records that are
/// not fsync'd are written by a queue a moment after the request).
@discardableResult
func waitForAuditRecord(_ stateDirectory: String, event: String, timeout: Double = 10) throws -> [JSONObject] {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let found = try auditFields(stateDirectory, event: event)
        if !found.isEmpty { return found }
        usleep(20_000)
    }
    throw TestFailure("no \(event) record in \(stateDirectory)/audit.log within \(timeout) s")
}

/// Polls a condition (files written by child processes, log lines).
func waitUntil(timeout: Double = 10, _ what: String, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(20_000)
    }
    throw TestFailure("timed out after \(timeout) s waiting for \(what)")
}

func fileMode(_ path: String) -> mode_t {
    var info = stat()
    guard lstat(path, &info) == 0 else { return 0 }
    return info.st_mode & 0o7777
}

/// `secureops verify-log --state-dir DIR` (plus arguments).
func verifyLog(_ stateDirectory: String, _ extra: [String] = []) throws -> (Int32, String) {
    try run(DaemonProcess.cliPath, ["verify-log", "--state-dir", stateDirectory] + extra)
}

extension JSONObject {
    func int(_ key: String) -> Int? {
        guard case .number(let number)? = self[key], let value = number.int64Value else { return nil }
        return Int(value)
    }

    func string(_ key: String) -> String? {
        self[key]?.stringValue
    }
}
