import SecureOpsSystem

/// The acknowledged cursor on disk: `<epoch> <sequence>\n`, replaced
/// atomically and durably. The epoch names the journal the sequence
/// belongs to; a cursor of another epoch is no cursor.
struct CursorFile: Sendable {
    let directory: OpenedDirectory
    let name: String

    struct Contents: Equatable {
        var epoch: String
        var sequence: UInt64
    }

    /// The stored cursor; nil when there is none. A file that does not
    /// parse is an error: guessing would re-send or skip alerts.
    func load() throws -> Contents? {
        guard let bytes = try directory.readFile(name, limit: 256) else { return nil }
        let fields = String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2, let sequence = UInt64(fields[1]) else {
            throw CursorFileError(path: directory.pathOf(name))
        }
        return Contents(epoch: String(fields[0]), sequence: sequence)
    }

    func store(_ contents: Contents) throws(SystemError) {
        try directory.replaceAtomically(name, with: Array("\(contents.epoch) \(contents.sequence)\n".utf8))
    }
}

struct CursorFileError: Error, CustomStringConvertible {
    var path: String
    var description: String { "\(path): not a forwarder cursor (<epoch> <sequence>)" }
}
