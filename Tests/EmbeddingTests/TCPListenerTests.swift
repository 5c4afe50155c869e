import Foundation
import Glibc
import SecureOpsClient
import SecureOpsEngine
import Testing

/// An engine listening on TCP (IPv4 and IPv6) beside its Unix socket: TCP
/// peers carry an address and no credentials, and `admit` decides.
// The limit catches a hang, not slowness: it counts from when the test is
// queued, and under ASan the end-to-end suites beside it hold both threads
// of the pool for over a minute (the other end-to-end suites have 2 to 5).
@Suite("TCP listeners", .timeLimit(.minutes(5)))
struct TCPListenerTests {
    static let ipv6Loopback = FileManager.default.fileExists(atPath: "/proc/net/if_inet6")
        && ((try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8))?.contains("00000000000000000000000000000001") ?? false)

    @Test func oneEngineServesAUnixSocketAndTCPOnIPv4AndIPv6() throws {
        let scratch = try ScratchDirectory()
        var listeners: [ListenAddress] = [.unix(path: scratch.socket()), .tcp(host: "127.0.0.1", port: 0)]
        if Self.ipv6Loopback { listeners.append(.tcp(host: "::1", port: 0)) }
        let engine = try startEngine(PeerEchoHandler(), path: scratch.socket()) { $0.listeners = listeners }
        defer { engine.shutdownAndWait() }

        let bound = engine.boundAddresses
        #expect(bound.count == listeners.count)
        #expect(bound.first == .unix(path: scratch.socket()))
        for case .tcp(let address) in bound {
            #expect(address.port != 0, "the kernel's port is reported, not 0")
            let client = try TCPLineClient(address)
            try client.send(line: #"{"type":"ping"}"#)
            let reply = try #require(try client.readLine())
            // The peer is the client's own end: same host, its local port.
            #expect(reply == #"{"type":"ok","peer":"remote","host":"\#(address.host)","port":\#(client.localPort),"listener":"tcp://\#(address)"}"#)
        }
        let local = try SecureOpsConnection.connect(to: scratch.socket())
        try local.send(line: #"{"type":"ping"}"#)
        #expect(try local.readLine() == #"{"type":"ok","peer":"local","uid":\#(getuid()),"listener":"\#(scratch.socket())"}"#)
    }

    @Test func admitDecidesWhichTCPPeersMayStayAndARefusedOneGetsTheMessage() throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(PeerEchoHandler(refuseRemote: "only local peers here"), path: scratch.socket()) {
            $0.listeners = [.unix(path: scratch.socket()), .tcp(host: "127.0.0.1", port: 0)]
        }
        defer { engine.shutdownAndWait() }
        guard case .tcp(let address) = engine.boundAddresses[1] else { throw TestFailure("no TCP listener bound") }
        let client = try TCPLineClient(address)
        try client.send(line: #"{"type":"ping"}"#)
        #expect(try client.readLine() == #"{"type":"err","message":"only local peers here"}"#)
        #expect(try client.readLine() == nil, "a refused peer is disconnected")
        #expect(engine.statistics.connectionsRefused == 1)
    }

    @Test func pipelinedRepliesAndBroadcastsReachTCPPeersInOrder() throws {
        let scratch = try ScratchDirectory()
        let engine = try startEngine(PeerEchoHandler(), path: scratch.socket()) {
            $0.listeners = [.unix(path: scratch.socket()), .tcp(host: "127.0.0.1", port: 0)]
        }
        defer { engine.shutdownAndWait() }
        guard case .tcp(let address) = engine.boundAddresses[1] else { throw TestFailure("no TCP listener bound") }

        let watcher = try TCPLineClient(address)
        try watcher.send(line: #"{"type":"subscribe"}"#)
        #expect(try watcher.readLine()?.hasPrefix(#"{"type":"ok","subscribed":true"#) == true)

        // 500 publishes in one write over TCP: answered in order, and the
        // watcher (also TCP) sees every alert once, in sequence order.
        let publisher = try TCPLineClient(address)
        let batch = (1...500).map { #"{"type":"publish","alert":{"severity":"info","source":"tcp","message":"m\#($0)"}}"# }
        try publisher.send(line: batch.joined(separator: "\n"))
        for expected in 1...500 {
            #expect(try publisher.readLine() == #"{"type":"ok","sequence":\#(expected)}"#)
        }
        for expected in 1...500 {
            let alert = try #require(try watcher.readLine())
            #expect(alert.contains(#""sequence":\#(expected),"#) && alert.contains(#""message":"m\#(expected)""#), "\(alert)")
        }
    }

    @Test func aTCPHostThatIsNotAnIPLiteralFailsStartAndNamesTheFix() throws {
        let scratch = try ScratchDirectory()
        #expect {
            _ = try startEngine(PeerEchoHandler(), path: scratch.socket()) {
                $0.listeners = [.unix(path: scratch.socket()), .tcp(host: "localhost", port: 0)]
            }
        } throws: { error in
            "\(error)".contains("localhost is not an IPv4 or IPv6 address; give an IP literal such as 127.0.0.1")
        }
        // Nothing stays bound when a later listener fails.
        #expect(!FileManager.default.fileExists(atPath: scratch.socket()))
    }

    @Test func aTCPPortInUseFailsStartWithTheAddressAndTheReason() throws {
        let scratch = try ScratchDirectory()
        let first = try startEngine(PeerEchoHandler(), path: scratch.socket("first")) {
            $0.listeners = [.tcp(host: "127.0.0.1", port: 0)]
        }
        defer { first.shutdownAndWait() }
        guard case .tcp(let taken) = first.boundAddresses[0] else { throw TestFailure("no TCP listener bound") }
        #expect {
            _ = try startEngine(PeerEchoHandler(), path: scratch.socket("second")) {
                $0.listeners = [.unix(path: scratch.socket("second")), .tcp(taken)]
            }
        } throws: { error in
            "\(error)" == "bind() \(taken): Address already in use"
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.socket("second")))
    }
}

/// Answers `ping` with who the engine thinks the peer is; the rest as the
/// wire protocol (publish, subscribe). Optionally refuses TCP peers.
final class PeerEchoHandler: RequestHandler {
    typealias Request = IpcRequest
    private let wire = WireHandler()
    private let refuseRemote: String?

    init(refuseRemote: String? = nil) {
        self.refuseRemote = refuseRemote
    }

    func admit(_ connection: ConnectionInfo) -> Admission {
        if let refuseRemote, connection.remoteAddress != nil { return .refuse(refuseRemote) }
        return .admit
    }

    func handle(_ request: IpcRequest, context: RequestContext) throws -> Reply {
        guard case .ping = request else { return try wire.handle(request, context: context) }
        let connection = context.connection
        context.response.beginObject()
        context.response.key("type")
        context.response.string("ok")
        switch connection.peer {
        case .local(let credentials, _):
            context.response.key("peer")
            context.response.string("local")
            context.response.key("uid")
            context.response.uint(UInt64(credentials.uid))
        case .remote(let address):
            context.response.key("peer")
            context.response.string("remote")
            context.response.key("host")
            context.response.string(address.host)
            context.response.key("port")
            context.response.uint(UInt64(address.port))
        }
        context.response.key("listener")
        context.response.string(connection.listener.description)
        context.response.endObject()
        context.response.newline()
        return .respond
    }
}

/// A blocking TCP client that reads newline-terminated frames.
final class TCPLineClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(_ address: TCPAddress) throws {
        let family = address.host.contains(":") ? AF_INET6 : AF_INET
        fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var storage = sockaddr_storage()
        let length: Int = withUnsafeMutableBytes(of: &storage) { raw in
            if family == AF_INET6 {
                let sin6 = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = address.port.bigEndian
                inet_pton(AF_INET6, address.host, &sin6.pointee.sin6_addr)
                return MemoryLayout<sockaddr_in6>.size
            }
            let sin = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
            sin.pointee.sin_family = sa_family_t(AF_INET)
            sin.pointee.sin_port = address.port.bigEndian
            inet_pton(AF_INET, address.host, &sin.pointee.sin_addr)
            return MemoryLayout<sockaddr_in>.size
        }
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(length)) }
        }
        guard rc == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TestFailure("connect \(address): \(message)")
        }
    }

    deinit { Glibc.close(fd) }

    /// This end's port, as the server sees it.
    var localPort: UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: &storage) { raw in
            family == AF_INET6
                ? UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
                : UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
    }

    func send(line: String) throws {
        let bytes = Array((line + "\n").utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send: \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    /// The next line without its newline; nil at end of stream. Throws if
    /// nothing arrives within `timeout` seconds.
    func readLine(timeout: Double = 10) throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw TestFailure("no line within \(timeout) s") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(left * 1000) + 1) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n == 0 { return nil }
            guard n > 0 else { throw TestFailure("recv: \(String(cString: strerror(errno)))") }
            buffer += chunk[..<n]
        }
    }
}
