import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The control socket and state directory against symlink, squatting and
/// permission attacks.
@Suite("Socket and state directory safety", .timeLimit(.minutes(2)))
struct SocketSafetyTests {
    func scratchDirectory() throws -> String {
        var template = Array("/tmp/secureops-safety-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed") }
        return String(cString: template)
    }

    @Test func theSocketAndItsDirectoryGetTheirModesWhenCreated() throws {
        let daemon = try DaemonProcess()
        var info = stat()
        #expect(lstat(daemon.socketPath, &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o660)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(lstat(daemon.directory + "/run", &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o750)
    }

    @Test func aSymlinkAtTheSocketPathIsNotReplaced() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let target = directory + "/precious"
        try "keep me".write(toFile: target, atomically: true, encoding: .utf8)
        symlink(target, directory + "/s.sock")
        let (status, output) = try runDaemon(["--socket", directory + "/s.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("is a symbolic link, not a socket; refusing to replace it"), "got \(output)")
        #expect((try? String(contentsOfFile: target, encoding: .utf8)) == "keep me")
    }

    @Test func aSocketDirectoryOwnedByAnotherUserIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let squatted = directory + "/squatted"
        mkdir(squatted, 0o755)
        chown(squatted, 65534, 65534)
        let (status, output) = try runDaemon(["--socket", squatted + "/s.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("refusing to create the socket in \(squatted): it is owned by uid 65534"), "got \(output)")
    }

    @Test func aSocketDirectoryOthersMayWriteIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let open = directory + "/open"
        mkdir(open, 0o777)
        chmod(open, 0o777)
        let (status, output) = try runDaemon(["--socket", open + "/s.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("refusing to create the socket in \(open): it is writable by group or others (mode 0777)"), "got \(output)")
    }

    @Test func aStateDirectoryThatIsASymlinkIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        mkdir(directory + "/elsewhere", 0o700)
        symlink(directory + "/elsewhere", directory + "/state")
        let (status, output) = try runDaemon(["--socket", directory + "/s.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("state directory"), "got \(output)")
        #expect(output.contains("symlink") || output.contains("symbolic link"), "got \(output)")
    }

    /// Every directory above the socket counts: whoever owns one could
    /// rename the socket's directory away and put their own in its place.
    @Test func aSocketDirectoryBelowADirectoryAnotherUserOwnsIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o755)
        let theirs = directory + "/theirs"
        mkdir(theirs, 0o755)
        chown(theirs, 65534, 65534)
        let (status, output) = try runDaemon(["--socket", theirs + "/run/s.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("refusing to create the socket in \(theirs): it is owned by uid 65534, who could replace what lies beneath it"), "got \(output)")
        #expect(!FileManager.default.fileExists(atPath: theirs + "/run"))
    }

    @Test func aSocketDirectoryThatIsASymlinkIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        mkdir(directory + "/real", 0o750)
        symlink(directory + "/real", directory + "/run")
        let (status, output) = try runDaemon(["--socket", directory + "/run/s.sock", "--state-dir", directory + "/state"])
        #expect(status != 0)
        #expect(output.contains("refusing to create the socket in \(directory)/run: it is a symbolic link to \(directory)/real; give the real path instead"), "got \(output)")
    }
}
