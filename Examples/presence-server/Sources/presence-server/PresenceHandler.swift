import Glibc
import SecureOpsEngine

/// The presence protocol on the engine. Runs on the engine's loop thread, so
/// the table below needs no lock; saving touches the disk and is offloaded.
final class PresenceHandler: RequestHandler {
    typealias Request = PresenceRequest

    struct Entry: Sendable {
        var status: PresenceStatus
        var note: String?
        var sequence: UInt64
        var milliseconds: Int64
    }

    private var people: [String: Entry] = [:]
    private let snapshotPath: String

    init(snapshotPath: String) {
        self.snapshotPath = snapshotPath
    }

    /// On the Unix socket only this server's own user (and root) may
    /// connect: the kernel's word (SO_PEERCRED), not the client's. Over TCP
    /// nothing says who the peer is, so only this host's loopback may.
    func admit(_ connection: ConnectionInfo) -> Admission {
        switch connection.peer {
        case .local(let credentials, _):
            let uid = credentials.uid
            return uid == getuid() || uid == 0 ? .admit : .refuse("uid \(uid) may not use this presence server")
        case .remote(let address):
            let loopback = address.host == "::1" || address.host.hasPrefix("127.")
            return loopback ? .admit : .refuse("\(address.host) may not use this presence server; connect from this host")
        }
    }

    func handle(_ request: PresenceRequest, context: RequestContext) throws -> Reply {
        switch request {
        case .set(let name, let status, let note):
            guard !name.isEmpty, name.utf8.count <= 64 else { throw PresenceError("name: 1 to 64 bytes") }
            var entry = Entry(status: status, note: note, sequence: 0, milliseconds: 0)
            entry.sequence = context.publish { sequence, milliseconds, writer in
                entry.milliseconds = milliseconds
                Self.writePresence(name, entry, sequence: sequence, type: "presence", into: &writer)
                writer.newline()
            }
            people[name] = entry
            ok(context) { writer in
                writer.key("sequence")
                writer.uint(entry.sequence)
            }
        case .get(let name):
            guard let entry = people[name] else { throw PresenceError("nobody called \"\(name.prefix(64))\" has set a status") }
            Self.writePresence(name, entry, sequence: entry.sequence, type: "ok", into: &context.response)
            context.response.newline()
        case .list:
            ok(context) { writer in
                writer.key("people")
                writer.beginArray()
                for (name, entry) in people.sorted(by: { $0.key < $1.key }) {
                    Self.writePresence(name, entry, sequence: entry.sequence, type: nil, into: &writer)
                }
                writer.endArray()
            }
        case .watch(let since):
            let next = context.subscribe(since: since)
            ok(context) { writer in
                writer.key("next")
                writer.uint(next)
                writer.key("epoch")
                writer.string(context.epoch.description)
            }
        case .save:
            let snapshot = people
            let path = snapshotPath
            return .offload {
                try Snapshot.write(snapshot, to: path)
                return OffloadedReply.writing { writer in
                    writer.beginObject()
                    writer.key("type")
                    writer.string("ok")
                    writer.key("saved")
                    writer.int(snapshot.count)
                    writer.key("path")
                    writer.string(path)
                    writer.endObject()
                    writer.newline()
                }
            }
        }
        return .respond
    }

    private func ok(_ context: RequestContext, _ body: (inout JSONWriter) -> Void) {
        context.response.beginObject()
        context.response.key("type")
        context.response.string("ok")
        body(&context.response)
        context.response.endObject()
        context.response.newline()
    }

    /// `{"type":…,"sequence":N,"time":"…","name":…,"status":…,"note":…}`
    static func writePresence(_ name: String, _ entry: Entry, sequence: UInt64, type: String?, into writer: inout JSONWriter) {
        writer.beginObject()
        if let type {
            writer.key("type")
            writer.string(type)
        }
        writer.key("sequence")
        writer.uint(sequence)
        writer.key("time")
        writer.timestamp(millisecondsSinceEpoch: entry.milliseconds)
        writer.key("name")
        writer.string(name)
        writer.key("status")
        writer.string(entry.status.rawValue)
        writer.key("note")
        if let note = entry.note { writer.string(note) } else { writer.null() }
        writer.endObject()
    }
}

struct PresenceError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The snapshot file: written to a temporary name, then renamed, so a
/// reader never sees half of it.
enum Snapshot {
    static func write(_ people: [String: PresenceHandler.Entry], to path: String) throws {
        var writer = JSONWriter(capacity: 4096)
        writer.beginArray()
        for (name, entry) in people.sorted(by: { $0.key < $1.key }) {
            PresenceHandler.writePresence(name, entry, sequence: entry.sequence, type: nil, into: &writer)
        }
        writer.endArray()
        writer.newline()
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PresenceError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = writer.bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == writer.bytes.count, fsync(fd) == 0, rename(temporary, path) == 0 else {
            throw PresenceError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
