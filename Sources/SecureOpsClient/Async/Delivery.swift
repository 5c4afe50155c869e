import SecureOpsSystem

/// One outcome handed from whichever thread has it first to the one task
/// that waits for it: a reply, a timeout, a cancellation, a lost
/// connection. The first outcome wins; later ones are ignored, so the
/// parties racing to end a wait (the reply reader, the timer, the
/// cancellation handler, `close()`) need no other coordination.
///
/// The outcome may come before the wait starts (a reply faster than the
/// caller, a cancellation before the request was queued); the wait then
/// returns it at once.
final class Delivery<Value: Sendable>: Sendable {
    private enum State {
        /// Nobody waits yet and nothing has come.
        case idle
        /// The outcome came before the wait.
        case arrived(Result<Value, any Error>)
        /// A task waits; `timer` ends the wait at its deadline.
        case waiting(CheckedContinuation<Value, any Error>, timer: SocketPoller.Registration?)
        /// The outcome was handed over.
        case done
    }

    private let state = Locked(State.idle)

    private enum SettleAction {
        case none, stored
        case resume(CheckedContinuation<Value, any Error>, SocketPoller.Registration?)
    }

    /// Whether an outcome has come (handed over or not).
    var isSettled: Bool {
        state.withLock { state in
            if case .idle = state { return false }
            if case .waiting = state { return false }
            return true
        }
    }

    /// Settles the wait with `outcome`, unless it is settled already.
    /// Returns whether this call settled it.
    @discardableResult
    func settle(_ outcome: Result<Value, any Error>) -> Bool {
        let action = state.withLock { state -> SettleAction in
            switch state {
            case .idle:
                state = .arrived(outcome)
                return .stored
            case .waiting(let continuation, let timer):
                state = .done
                return .resume(continuation, timer)
            case .arrived, .done:
                return .none
            }
        }
        switch action {
        case .none: return false
        case .stored: return true
        case .resume(let continuation, let timer):
            if let timer { SocketPoller.shared.cancel(timer) }
            continuation.resume(with: outcome)
            return true
        }
    }

    /// Waits for the outcome. At `deadline` (CLOCK_MONOTONIC ns; nil: none)
    /// the wait settles with `atDeadline()`; a cancelled task settles it
    /// with `CancellationError`.
    func wait(deadline: UInt64?, atDeadline: @escaping @Sendable () -> Result<Value, any Error>) async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
                let early = state.withLock { state -> Result<Value, any Error>? in
                    switch state {
                    case .idle:
                        state = .waiting(continuation, timer: nil)
                        return nil
                    case .arrived(let outcome):
                        state = .done
                        return outcome
                    case .waiting, .done:
                        preconditionFailure("a Delivery is waited for once")
                    }
                }
                if let early {
                    continuation.resume(with: early)
                    return
                }
                guard let deadline else { return }
                let timer = SocketPoller.shared.schedule(at: deadline) { [weak self] in
                    self?.settle(atDeadline())
                }
                // Keep the timer where `settle` finds it, unless the
                // outcome came meanwhile (then the timer is not needed).
                let stale = state.withLock { state -> Bool in
                    guard case .waiting(let continuation, nil) = state else { return true }
                    state = .waiting(continuation, timer: timer)
                    return false
                }
                if stale { SocketPoller.shared.cancel(timer) }
            }
        } onCancel: {
            settle(.failure(CancellationError()))
        }
    }
}
