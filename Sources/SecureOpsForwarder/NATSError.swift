import CNATS

/// A NATS failure in words: the library's status and its last error text
/// on this thread, with what was being done.
public struct NATSError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var status: Int32
    public var text: String

    /// Errors that repeating the same attempt will not fix: rejected
    /// credentials, a certificate not trusted, a file that cannot be read.
    public var needsOperator: Bool

    public var description: String { "\(operation): \(text)" }

    init(_ operation: String, status: natsStatus) {
        self.operation = operation
        self.status = Int32(bitPattern: status.rawValue)
        var last = NATS_OK
        let detail = nats_GetLastError(&last).map { String(cString: $0) } ?? ""
        let summary = String(cString: natsStatus_GetText(status))
        text = detail.isEmpty || detail == summary ? summary : "\(summary) (\(detail))"
        switch status {
        case NATS_CONNECTION_AUTH_FAILED, NATS_NOT_PERMITTED, NATS_SSL_ERROR,
             NATS_SECURE_CONNECTION_REQUIRED, NATS_SECURE_CONNECTION_WANTED:
            needsOperator = true
        default:
            needsOperator = false
        }
    }

    init(_ operation: String, text: String, needsOperator: Bool) {
        self.operation = operation
        status = -1
        self.text = text
        self.needsOperator = needsOperator
    }

    /// `status` as an error, nil when it is NATS_OK.
    static func check(_ status: natsStatus, _ operation: @autoclosure () -> String) -> NATSError? {
        status == NATS_OK ? nil : NATSError(operation(), status: status)
    }
}
