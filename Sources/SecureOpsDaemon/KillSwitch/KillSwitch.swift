import Glibc
import Synchronization
import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsSystem

/// The kill switch: once tripped it stays tripped, across restarts, until an
/// operator resets it with `secureopsd reset-kill` while the daemon is
/// stopped. The state lives in `kill-switch.json` in the state directory.
///
/// The first trip is what the state keeps (reason, time, who); later
/// `kill`s while it is tripped change nothing here and are recorded in the
/// audit log instead, so nobody can overwrite why the switch was tripped.
public final class KillSwitch: Sendable {
    public struct State: Sendable, Equatable, Codable {
        public var killed: Bool
        public var reason: String?
        public var trippedAt: String?
        public var uid: UInt32?
        public var pid: Int32?

        public static let clear = State(killed: false, reason: nil, trippedAt: nil, uid: nil, pid: nil)
    }

    public static let fileName = "kill-switch.json"

    public let path: String
    private let directory: OpenedDirectory
    /// The state, and whether the file holds it (a failed write is retried
    /// by the next `trip`).
    private let state: Locked<(state: State, persisted: Bool)>

    public struct Untrusted: Error, CustomStringConvertible {
        public var problem: StateFileProblem
        public var description: String { "kill-switch state \(problem)" }
    }

    /// Loads the persisted state. A state file that cannot be read or parsed
    /// counts as tripped: a security control fails closed. One that someone
    /// else owns or may write is refused: it may have been planted or edited.
    public init(directory: OpenedDirectory, owner: UInt32, logger: (String) -> Void) throws(Untrusted) {
        self.directory = directory
        path = directory.pathOf(Self.fileName)
        var loaded = State.clear
        do {
            let (file, _) = try StateFile.open(Self.fileName, in: directory, flags: O_RDONLY, owner: owner)
            if let bytes = file.read(at: 0, count: 1 << 20) {
                do {
                    loaded = try FastJSONDecoder().decode(State.self, from: bytes)
                } catch {
                    loaded = State(killed: true, reason: "kill-switch state file is corrupt (\(error)); treated as tripped", trippedAt: nil, uid: nil, pid: nil)
                    logger("kill-switch state \(path) is corrupt: \(error); treating the switch as tripped")
                }
            } else {
                let why = String(cString: strerror(errno))
                loaded = State(killed: true, reason: "kill-switch state file unreadable (\(why)); treated as tripped", trippedAt: nil, uid: nil, pid: nil)
                logger("cannot read kill-switch state \(path): \(why); treating the switch as tripped")
            }
        } catch {
            if error.code != ENOENT {
                if error.code == nil || error.code == ELOOP { throw Untrusted(problem: error) }
                loaded = State(killed: true, reason: "kill-switch state file unreadable (\(error)); treated as tripped", trippedAt: nil, uid: nil, pid: nil)
                logger("cannot read kill-switch state: \(error); treating the switch as tripped")
            }
        }
        state = Locked((loaded, true))
    }

    public var current: State {
        state.withLock { $0.state }
    }

    /// What `trip` did.
    public enum Trip: Sendable, Equatable {
        /// The switch was clear and is now tripped (persisted, fsync'd).
        case tripped(State)
        /// It was already tripped; the first trip's state stands.
        case alreadyTripped(State)
    }

    /// Trips the switch and persists it (fsync) before returning, unless it
    /// is already tripped. If the disk fails the switch still trips in
    /// memory, the error is thrown, and the next `trip` writes it again.
    public func trip(reason: String?, peer: PeerCred, timestampMilliseconds: Int64) throws(SystemError) -> Trip {
        var writer = JSONWriter()
        writer.timestamp(millisecondsSinceEpoch: timestampMilliseconds)
        let at = String(decoding: writer.bytes.dropFirst().dropLast(), as: UTF8.self)
        // Clipped: the state file is read back with a size limit, and a
        // reason is for people, not for bulk data.
        let tripped = State(killed: true, reason: reason.map { AuditText.clip($0) }, trippedAt: at, uid: peer.uid, pid: peer.pid)
        let (outcome, needsWrite) = state.withLock { current -> (Trip, Bool) in
            guard !current.state.killed else { return (.alreadyTripped(current.state), !current.persisted) }
            current = (tripped, false)
            return (.tripped(tripped), true)
        }
        guard needsWrite else { return outcome }
        // The first trip's state is what the file keeps.
        let kept = current
        try directory.replaceAtomically(Self.fileName, with: (try? FastJSONEncoder().encode(kept)) ?? [])
        state.withLock { if $0.state == kept { $0.persisted = true } }
        return outcome
    }

    /// Clears the persisted state (the daemon must be stopped). Returns the
    /// state that was cleared.
    public static func reset(directory: OpenedDirectory, owner: UInt32) throws(SystemError) -> State? {
        // A corrupt file counted as tripped (fail closed); say so, not "clear".
        let previous: State?
        do {
            let (file, _) = try StateFile.open(fileName, in: directory, flags: O_RDONLY, owner: owner)
            let bytes = file.read(at: 0, count: 1 << 20) ?? []
            previous = (try? FastJSONDecoder().decode(State.self, from: bytes))
                ?? State(killed: true, reason: "the kill-switch state file was corrupt (treated as tripped)", trippedAt: nil, uid: nil, pid: nil)
        } catch {
            if error.code != ENOENT {
                previous = State(killed: true, reason: "the kill-switch state file was untrusted (\(error))", trippedAt: nil, uid: nil, pid: nil)
            } else {
                previous = nil
            }
        }
        try directory.remove(fileName)
        directory.sync()
        return previous
    }
}
