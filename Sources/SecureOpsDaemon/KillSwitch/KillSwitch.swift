import Glibc
import Synchronization
import SecureOpsAuditLog
import SecureOpsEngine

/// The kill switch: once tripped it stays tripped, across restarts, until an
/// operator resets it with `secureopsd reset-kill` while the daemon is
/// stopped. The state lives in `kill-switch.json` in the state directory.
public final class KillSwitch: Sendable {
    public struct State: Sendable, Equatable, Codable {
        public var killed: Bool
        public var reason: String?
        public var trippedAt: String?
        public var uid: UInt32?
        public var pid: Int32?

        public static let clear = State(killed: false, reason: nil, trippedAt: nil, uid: nil, pid: nil)
    }

    public let path: String
    private let state: Locked<State>

    public static func path(stateDirectory: String) -> String {
        stateDirectory + "/kill-switch.json"
    }

    /// Loads the persisted state. A state file that cannot be read or parsed
    /// counts as tripped: a security control fails closed.
    public init(stateDirectory: String, logger: (String) -> Void) {
        path = KillSwitch.path(stateDirectory: stateDirectory)
        var loaded = State.clear
        do {
            if let bytes = try SecureFile.read(path) {
                do {
                    loaded = try FastJSONDecoder().decode(State.self, from: bytes)
                } catch {
                    loaded = State(killed: true, reason: "kill-switch state file is corrupt (\(error)); treated as tripped", trippedAt: nil, uid: nil, pid: nil)
                    logger("kill-switch state \(path) is corrupt: \(error); treating the switch as tripped")
                }
            }
        } catch {
            loaded = State(killed: true, reason: "kill-switch state file unreadable (\(error)); treated as tripped", trippedAt: nil, uid: nil, pid: nil)
            logger("cannot read kill-switch state: \(error); treating the switch as tripped")
        }
        state = Locked(loaded)
    }

    public var current: State {
        state.withLock { $0 }
    }

    /// Trips the switch and persists it (fsync) before returning.
    public func trip(reason: String?, peer: PeerCred, timestampMilliseconds: Int64) throws -> State {
        var writer = JSONWriter()
        writer.timestamp(millisecondsSinceEpoch: timestampMilliseconds)
        let at = String(decoding: writer.bytes.dropFirst().dropLast(), as: UTF8.self)
        // Clipped: the state file is read back with a size limit, and a
        // reason is for people, not for bulk data.
        let tripped = State(killed: true, reason: reason.map { AuditText.clip($0) }, trippedAt: at, uid: peer.uid, pid: peer.pid)
        try SecureFile.writeAtomically(try FastJSONEncoder().encode(tripped), to: path)
        state.withLock { $0 = tripped }
        return tripped
    }

    /// Clears the persisted state (the daemon must be stopped). Returns the
    /// state that was cleared.
    public static func reset(stateDirectory: String) throws -> State? {
        let path = path(stateDirectory: stateDirectory)
        // A corrupt file counted as tripped (fail closed); say so, not "clear".
        let previous = try SecureFile.read(path).map { bytes in
            (try? FastJSONDecoder().decode(State.self, from: bytes))
                ?? State(killed: true, reason: "the kill-switch state file was corrupt (treated as tripped)", trippedAt: nil, uid: nil, pid: nil)
        }
        if unlink(path) != 0 && errno != ENOENT {
            throw SecureFile.Failure(operation: "unlink", path: path, code: errno)
        }
        LogFileIO.syncDirectory(of: path)
        return previous
    }
}
