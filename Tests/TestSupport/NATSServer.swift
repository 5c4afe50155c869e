import Foundation
import Glibc

/// A free loopback TCP port: bound to port 0, read back, closed.
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    defer { close(fd) }
    var address = loopback(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestFailure("bind/getsockname: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

public func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// Whether something accepts TCP connections on the loopback port.
public func accepts(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = loopback(port: port)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// A real nats-server with JetStream, killed (SIGKILL) when it goes away.
/// `start` again after `kill` runs it on the same port and store.
public final class NATSServer {
    public let port: Int
    public let arguments: [String]
    public let logPath: String
    private var process: Process?

    public var url: String { "nats://127.0.0.1:\(port)" }

    /// A single server: `-js -sd <store> -a 127.0.0.1 -p <port>` and `extra`.
    public convenience init(in scratch: ScratchDirectory, name: String = "nats", extra: [String] = []) throws {
        let port = try freePort()
        let store = scratch.path + "/\(name)-store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        self.init(port: port, arguments: ["-js", "-sd", store, "-a", "127.0.0.1", "-p", "\(port)"] + extra, log: scratch.path + "/\(name).log")
    }

    public init(port: Int, arguments: [String], log: String) {
        self.port = port
        self.arguments = arguments
        logPath = log
    }

    public func start() throws {
        precondition(process == nil, "already running")
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nats-server")
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        guard eventually(within: 15, { accepts(port: port) || !process.isRunning }), process.isRunning else {
            let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw TestFailure("nats-server \(arguments.joined(separator: " ")) did not start listening:\n\(output.suffix(2000))")
        }
    }

    public func kill() {
        guard let process else { return }
        self.process = nil
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { kill() }
}

