import Foundation
import Testing
import SecureOpsClient
import SecureOpsEngine

/// The daemon run as a dedicated, unprivileged user (here 65534) with its
/// own socket and state directories, the way a hardened unit would run it.
@Suite("Dedicated user", .timeLimit(.minutes(5)))
struct DedicatedUserTests {
    @Test func aDaemonRunAsADedicatedUserServesRootAndItsOwnUidAndOwnsItsFiles() throws {
        var template = Array("/tmp/secureops-dedicated-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw TestFailure("mkdtemp failed") }
        let directory = String(cString: template)
        chmod(directory, 0o755)
        mkdir(directory + "/run", 0o750)
        chown(directory + "/run", 65534, 65534)
        mkdir(directory + "/state", 0o700)
        chown(directory + "/state", 65534, 65534)
        let daemon = try DaemonProcess(
            directory: directory, launcher: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])

        // Root may always; the daemon's own uid too.
        let root = try daemon.connect()
        try root.ping()
        #expect(try root.status().pid == daemon.pid)
        let (status, output) = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", DaemonProcess.cliPath, "ping", "--socket", daemon.socketPath])
        #expect(status == 0, "\(output)")

        // It holds no privilege it does not need, and what it made is its own.
        let report = try root.audit()
        #expect(report.checks.first { $0.id == "privileges" }?.status == .pass)
        var info = stat()
        #expect(lstat(daemon.socketPath, &info) == 0 && info.st_uid == 65534)
        #expect(lstat(daemon.stateDirectory + "/audit.key", &info) == 0 && info.st_uid == 65534 && info.st_mode & 0o777 == 0o600)
        // A kill from root is recorded and persisted by the unprivileged daemon.
        _ = try root.kill(reason: "dedicated user check")
        #expect(lstat(daemon.stateDirectory + "/kill-switch.json", &info) == 0 && info.st_uid == 65534)
        #expect(try daemon.stop() == 0)
    }
}
