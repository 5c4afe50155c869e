import Glibc
import SecureOpsSystem
import SecureOpsEngine

extension DaemonServices {
    /// A `kill` request, on the Dispatch pool: trips the switch (persisted
    /// before the reply; the first trip is the one kept), broadcasts the
    /// critical alert, records it (fsync'd before the caller hears "ok")
    /// and asks the onKill runner for a run.
    func kill(reason: String?, peer: PeerCred) throws -> OffloadedReply {
        let now = SystemClock.realtimeMilliseconds()
        var persisted = true
        var alreadyTripped = false
        do {
            if case .alreadyTripped = try killSwitch.trip(reason: reason, peer: peer, timestampMilliseconds: now) {
                alreadyTripped = true
            }
        } catch {
            // The switch trips in memory even when the disk fails; the
            // failure is reported, not allowed to block the kill.
            persisted = false
            logger.error("kill switch tripped but could not be persisted: \(error)")
        }
        let sequence = broadcastKillAlert(reason: reason, peer: peer, alreadyTripped: alreadyTripped)
        logger.critical(alreadyTripped ? "kill requested again (the switch stays tripped as first recorded)" : "kill switch tripped", metadata: [
            "reason": "\(reason.map(Printable.escape) ?? "none")", "uid": "\(peer.uid)", "pid": "\(peer.pid)", "alert": "\(sequence)",
        ])
        trail.killed(reason: reason, peer: peer, alertSequence: sequence, persisted: persisted, alreadyTripped: alreadyTripped)
        onKill.request(OnKillRunner.Request(reason: reason, peer: peer))
        return OffloadedReply.writing { writer in
            OkFrame.write(into: &writer) { writer in
                writer.key("killed")
                writer.bool(true)
                writer.key("sequence")
                writer.uint(sequence)
                if !persisted {
                    writer.key("persisted")
                    writer.bool(false)
                }
                if alreadyTripped {
                    writer.key("alreadyTripped")
                    writer.bool(true)
                }
            }
        }
    }

    /// Broadcasts the `critical` kill alert with the reason and the caller;
    /// its origin is the daemon itself.
    func broadcastKillAlert(reason: String?, peer: PeerCred, alreadyTripped: Bool) -> UInt64 {
        var members: JSONObject = [
            "reason": reason.map { .string($0) } ?? .null,
            "uid": .number(JSONNumber(Int(peer.uid))),
            "pid": .number(JSONNumber(Int(peer.pid))),
        ]
        if alreadyTripped { members.members.append(.init(key: "alreadyTripped", value: .bool(true))) }
        let what = alreadyTripped ? "kill requested again (switch already tripped)" : "kill switch tripped"
        // A kill arriving as the daemon stops is still recorded in the
        // audit log and runs onKill; only the broadcast has nowhere to go.
        return publishOwnAlert(.critical, message: reason.map { "\(what): \($0)" } ?? what, details: .object(members))
    }
}
