import SecureOpsSystem
import SecureOpsEngine

/// The policy in force and its generation (bumped on every applied reload,
/// so holders of cached grants know to recompute them). One lock, so nobody
/// sees a new policy with an old generation or the reverse. A class, so the
/// parts that read it (handlers, the onKill runner) share one.
final class PolicyInForce: Sendable {
    private let state: Locked<(policy: Policy, generation: Int)>

    init(_ policy: Policy) {
        state = Locked((policy, 0))
    }

    var policy: Policy {
        state.withLock { $0.policy }
    }

    /// The policy with its generation, read together.
    var withGeneration: (policy: Policy, generation: Int) {
        state.withLock { $0 }
    }

    func replace(with policy: Policy) {
        state.withLock { $0 = (policy, $0.generation + 1) }
    }
}
