import Foundation
import SecureOpsClient
import SecureOpsSystem

/// Publishes from a thread of its own, one alert after another, until the
/// connection fails (the daemon was killed); remembers the sequences that
/// were answered.
final class BackgroundPublisher: Sendable {
    private final class Answered: Sendable {
        let sequences = Locked<[UInt64]>([])
    }
    private let answered = Answered()

    var sequences: [UInt64] { answered.sequences.withLock { $0 } }

    init(socket: String, prefix: String) {
        let answered = self.answered
        Thread {
            guard let connection = try? SecureOpsConnection.connect(to: socket) else { return }
            var index = 0
            while let sequence = try? connection.publish(AlertInput(severity: .medium, source: "crash-test", message: "\(prefix)\(index)")) {
                answered.sequences.withLock { $0.append(sequence) }
                index += 1
            }
        }.start()
    }
}
