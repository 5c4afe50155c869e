import Dispatch
import Glibc
import Logging
import Synchronization
import SecureOpsAuditLog
import SecureOpsEngine
import SecureOpsSystem

/// Runs the policy's `onKill` command after a `kill`, on a thread of its
/// own (never one of the Dispatch pool's, which answer requests), one run
/// at a time. Kills that arrive during a run are coalesced into one more
/// run after it: the watched agent is stopped again if it came back in the
/// meantime, and a burst of kills costs two runs, never one each, so
/// nothing piles up.
///
/// Before every run the program is opened and checked again
/// (`OnKillProgram`) and the checked descriptor is what runs.
final class OnKillRunner: Sendable {
    /// What a `kill` asked for.
    struct Request: Sendable {
        var reason: String?
        var peer: PeerCred
    }

    private struct State {
        var running = false
        var pending: Request?
        /// Kills folded into the pending run.
        var coalesced = 0
        var threadStarted = false
    }

    private let policy: @Sendable () -> Policy
    private let daemonUID: UInt32
    private let logger: Logger
    private let trail: AuditTrail
    private let state = Locked(State())
    private let work = DispatchSemaphore(value: 0)

    init(policy: @escaping @Sendable () -> Policy, daemonUID: UInt32, logger: Logger, trail: AuditTrail) {
        self.policy = policy
        self.daemonUID = daemonUID
        self.logger = logger
        self.trail = trail
    }

    /// Asks for a run; returns at once. Nothing happens without an `onKill`
    /// in the policy in force when the run starts.
    func request(_ request: Request) {
        guard policy().onKill != nil else { return }
        let (startRun, startThread) = state.withLock { state -> (Bool, Bool) in
            if state.running {
                state.pending = request
                state.coalesced += 1
                return (false, false)
            }
            state.running = true
            state.pending = request
            defer { state.threadStarted = true }
            return (true, !state.threadStarted)
        }
        if startThread {
            if case .failure(let error) = Threads.start({ [self] in runLoop() }) {
                logger.error("cannot start the onKill thread: \(error); onKill will not run")
                state.withLock { $0 = State() }
                return
            }
        }
        if startRun { work.signal() }
    }

    private func runLoop() {
        Threads.nameCurrentThread("secureops-onkill")
        while true {
            work.wait()
            while let (next, coalesced) = takePending() {
                run(next, coalesced: coalesced)
            }
        }
    }

    private func takePending() -> (Request, Int)? {
        state.withLock { state in
            guard let next = state.pending else {
                state.running = false
                return nil
            }
            state.pending = nil
            defer { state.coalesced = 0 }
            return (next, state.coalesced)
        }
    }

    private func run(_ request: Request, coalesced: Int) {
        guard let command = policy().onKill else { return }
        let started = SystemClock.monotonicNanoseconds()
        let outcome: CommandRunner.Outcome
        do {
            let program = try OnKillProgram.open(command.command[0], daemonUID: daemonUID)
            logger.notice("running onKill command", metadata: ["command": "\(command.command)", "timeoutSecs": "\(command.timeoutSecs)", "coalescedKills": "\(coalesced)"])
            let environment = [
                "SECUREOPS_KILL_REASON=\(AuditText.clip(request.reason ?? ""))",
                "SECUREOPS_KILL_UID=\(request.peer.uid)",
                "SECUREOPS_KILL_PID=\(request.peer.pid)",
            ]
            outcome = CommandRunner.run(program.descriptor, arguments: command.command, environment: environment, timeoutSeconds: command.timeoutSecs)
        } catch {
            outcome = .failedToStart("refused: \(error)")
        }
        let milliseconds = Int((SystemClock.monotonicNanoseconds() - started) / 1_000_000)
        let metadata: Logger.Metadata = ["command": "\(command.command)", "outcome": "\(outcome)", "durationMs": "\(milliseconds)"]
        if case .exited(0) = outcome {
            logger.notice("onKill command finished", metadata: metadata)
        } else {
            logger.error("onKill command failed", metadata: metadata)
        }
        trail.onKillFinished(command: command.command, outcome: outcome, milliseconds: milliseconds, timeoutSecs: command.timeoutSecs, coalescedKills: coalesced)
    }
}
