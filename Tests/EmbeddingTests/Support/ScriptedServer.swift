import Foundation
import Glibc
import SecureOpsSystem
import Synchronization

/// A Unix-socket server that follows a script, for client behaviour no real
/// server shows on demand: a connection closed right after a request is
/// read, frames split or padded in odd ways, a reply the client cannot
/// decode, a refusal at admission.
///
/// Every accepted connection runs `script` on a thread of its own, with its
/// index in accept order (0, 1, ...). Blocking sockets and plain threads:
/// nothing here waits on the cooperative pool the clients under test use.
final class ScriptedServer: Sendable {
    let path: String
    private let listener: Int32
    private let accepted = AcceptCount()

    /// How many connections were accepted so far.
    var connectionsAccepted: Int { accepted.value.load(ordering: .acquiring) }

    init(path: String, script: @escaping @Sendable (ScriptedPeer) -> Void) throws {
        self.path = path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.listener = listener
        var address = UnixSocketAddress.make(Array(path.utf8))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(listener)
            throw TestFailure("cannot listen on \(path): \(why)")
        }
        let accepted = accepted
        Thread.detachNewThread {
            while true {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }  // stop() shut the listener
                let index = accepted.value.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue
                Thread.detachNewThread { script(ScriptedPeer(fd: fd, index: index)) }
            }
        }
    }

    /// Stops accepting (connections already made run on) and removes the
    /// socket file, so the next connect fails as with no server at all.
    func stop() {
        Glibc.shutdown(listener, Int32(SHUT_RDWR))
        unlink(path)
    }

    deinit {
        stop()
        Glibc.close(listener)
    }
}

private final class AcceptCount: Sendable {
    let value = Atomic<Int>(0)
}

/// One accepted connection of a `ScriptedServer`.
final class ScriptedPeer: @unchecked Sendable {
    let index: Int
    private let fd: Int32
    private var pending: [UInt8] = []

    init(fd: Int32, index: Int) {
        self.fd = fd
        self.index = index
    }

    deinit { Glibc.close(fd) }

    /// The next line the client sent, without its newline; nil at the end
    /// of the stream or after `timeout` seconds. The default outlasts any
    /// test (their limit is a minute): a client starved of CPU by the tests
    /// running beside it must not find its server gone.
    func readLine(timeout: Double = 120) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                defer { pending.removeSubrange(...newline) }
                return String(decoding: pending[..<newline], as: UTF8.self)
            }
            guard Date() < deadline else { return nil }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return nil }
            pending += chunk[..<n]
        }
    }

    /// Writes `text` as it is (add the newlines yourself).
    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            written += n
        }
    }

    /// Closes the connection now (the client sees the end of the stream).
    func close() {
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Waits until the client closes its end (or `timeout` seconds pass).
    func waitForClientToClose(timeout: Double = 10) {
        while readLine(timeout: timeout) != nil {}
    }
}
