import Foundation
import Testing
import SecureOpsDaemon
import SecureOpsSystem

/// The state directory (kill switch, audit log, key) against another local
/// user: created without a chmod by path, refused when someone else owns
/// or may write it or anything above it, and its files refused when
/// planted or loosened by someone else.
@Suite("State directory", .timeLimit(.minutes(2)))
struct StateDirectoryTests {
    /// A root-owned directory of mode `mode` (sticky 1777 like /tmp, or
    /// owned by 65534) to put state directories in.
    func scratch(mode: mode_t = 0o755, owner: uid_t = 0) throws -> String {
        let directory = try makeTemporaryDirectory("secureops-state")
        chmod(directory, 0o755)
        let inner = directory + "/d"
        mkdir(inner, 0o700)
        chown(inner, owner, owner)
        chmod(inner, mode)
        return inner
    }

    /// The review's race: in a shared sticky directory (the /tmp of the
    /// default socket path) another user swaps a missing component between
    /// a directory and a symbolic link to a root-owned 0600 file while the
    /// daemon creates the path. The old code then chmodded the link's
    /// target (it happened on the 66th try). Thousands of tries here: the
    /// target keeps its mode and every try either creates our own
    /// directory or refuses, naming the component.
    @Test func creatingTheStateDirectoryNeverChmodsWhatARacingUserPointsAt() throws {
        let shared = try scratch(mode: 0o1777)
        defer { try? FileManager.default.removeItem(atPath: parentDirectory(shared)) }
        let secret = parentDirectory(shared) + "/secret"
        try "root only".write(toFile: secret, atomically: false, encoding: .utf8)
        chmod(secret, 0o600)
        let stop = shared + "/../stop"
        let racer = Process()
        racer.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        racer.arguments = SecondUser.setpriv() + [try compileFixture("path-racer"), shared, "a", secret, stop, "60"]
        let output = Pipe()
        racer.standardOutput = output
        try racer.run()
        defer {
            FileManager.default.createFile(atPath: stop, contents: nil)
            killAndWait(racer)
        }
        // Wait until the racer runs.
        let ready = output.fileHandleForReading.availableData
        #expect(String(decoding: ready, as: UTF8.self).hasPrefix("READY"))

        var created = 0
        var refused = 0
        for _ in 0..<5000 {
            do {
                let opened = try StateDirectory.open(shared + "/a/state", owner: 0)
                #expect(opened.directory.status.owner == 0)
                created += 1
                rmdir(shared + "/a/state")
                rmdir(shared + "/a")
            } catch {
                #expect(error.description.contains("\(shared)/a "), "got \(error)")
                refused += 1
            }
            #expect(fileMode(secret) == 0o600)
            if fileMode(secret) != 0o600 { break }
        }
        #expect(fileMode(secret) == 0o600, "a racing user turned \(secret) into \(String(fileMode(secret), radix: 8))")
        #expect(created + refused == 5000)
        // Both outcomes happened: the race was really run.
        #expect(refused > 0, "the racer never won a single try: the race did not run")
    }

    @Test func aStateDirectoryAnotherUserOwnsIsRefusedAtStart() throws {
        let directory = try scratch()
        let state = directory + "/state"
        mkdir(state, 0o777)
        chmod(state, 0o777)
        chown(state, 65534, 65534)
        let (status, output) = try runDaemon(["--socket", directory + "/s.sock", "--state-dir", state])
        #expect(status != 0)
        #expect(output.contains("cannot start: state directory \(state) is owned by uid 65534, who could change it; it must be owned by root"), "got \(output)")
    }

    @Test func ourOwnStateDirectoryThatOthersMayWriteIsRefused() throws {
        let directory = try scratch()
        let state = directory + "/state"
        mkdir(state, 0o770)
        chmod(state, 0o770)
        let (status, output) = try runDaemon(["--socket", directory + "/s.sock", "--state-dir", state])
        #expect(status != 0)
        #expect(output.contains("state directory \(state) is writable by group or others (mode 0770)"), "got \(output)")
    }

    @Test func aStateDirectoryBelowADirectoryAnotherUserOwnsIsRefused() throws {
        let directory = try scratch(owner: 65534)
        let (status, output) = try runDaemon(["--socket", "/tmp/secureops-state-unused.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("state directory \(directory)/state: \(directory) is owned by uid 65534, who could replace what lies beneath it"), "got \(output)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/state"))
    }

    @Test func anOwnStateDirectoryReadableByOthersIsTightenedThroughItsDescriptor() throws {
        let directory = try scratch()
        let daemon = try DaemonProcess(directory: directory)
        try daemon.stop()
        chmod(daemon.stateDirectory, 0o755)
        try daemon.restart()
        #expect(fileMode(daemon.stateDirectory) == 0o700)
        #expect(daemon.log.contains("state directory \(daemon.stateDirectory) had mode 0755; set to 0700"))
    }

    @Test func aKillSwitchFileAnotherUserPlantedIsRefused() throws {
        let daemon = try DaemonProcess()
        try daemon.stop()
        let planted = daemon.stateDirectory + "/kill-switch.json"
        try #"{"killed":false}"#.write(toFile: planted, atomically: false, encoding: .utf8)
        chown(planted, 65534, 65534)
        let (status, output) = try runDaemon(["--socket", daemon.socketPath, "--state-dir", daemon.stateDirectory])
        #expect(status != 0)
        #expect(output.contains("kill-switch state \(planted) is owned by uid 65534, not the daemon's uid 0: someone else made or replaced it"), "got \(output)")
        // The refusal is on record: the run ended with start-failed.
        #expect(try auditRecords(daemon.stateDirectory).last?.string("event") == "start-failed")
    }

    @Test func aLogFileOthersMayWriteIsRefused() throws {
        let daemon = try DaemonProcess()
        try daemon.stop()
        chmod(daemon.stateDirectory + "/audit.log", 0o666)
        let (status, output) = try runDaemon(["--socket", daemon.socketPath, "--state-dir", daemon.stateDirectory])
        #expect(status != 0)
        #expect(output.contains("\(daemon.stateDirectory)/audit.log is writable by group or others (mode 0666): it may have been changed"), "got \(output)")
    }
}

func parentDirectory(_ path: String) -> String {
    (path as NSString).deletingLastPathComponent
}
