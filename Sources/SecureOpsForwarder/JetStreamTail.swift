import CNATS
import Glibc

/// One message read back from the stream.
public struct TailedMessage: Sendable, Equatable {
    public var subject: String
    /// An alert frame, without a trailing newline.
    public var body: [UInt8]
    public var headers: [String: String]
}

/// Reads a JetStream stream in order through a pull consumer: durable when
/// named (it resumes after the last message it returned), ephemeral
/// otherwise (from the stream's first message). Blocking; one thread at a
/// time (for `secureops tail --nats`).
public final class JetStreamTail {
    private let link: NATSLink
    /// `natsSubscription *`.
    private let subscription: OpaquePointer
    /// Fetched, not yet returned; acked one by one as they are returned.
    private var buffered: [OpaquePointer] = []
    private var closed = false

    /// - Parameters:
    ///   - subject: the filter (within the stream's subjects); the stream is
    ///     the one holding it.
    ///   - durable: the consumer's name (no `.`); nil for an ephemeral one.
    public init(connection: NATSConnectionOptions, subject: String = "secureops.alerts.>", durable: String? = nil) throws(NATSError) {
        link = try NATSLink.connect(connection, events: nil)
        var code = jsErrCode(0)
        var created: OpaquePointer?
        let status = js_PullSubscribe(&created, link.jetStream, subject, durable, nil, nil, &code)
        if let error = NATSError.check(status, "consumer on \(subject)\(durable.map { " (durable \($0))" } ?? "")") {
            link.close()
            throw error
        }
        subscription = created!
    }

    deinit { close() }

    /// The next message in stream order; nil when none came within `timeout`.
    public func next(timeout: Duration) throws(NATSError) -> TailedMessage? {
        precondition(!closed, "tail closed")
        if buffered.isEmpty {
            var list = natsMsgList()
            let status = natsSubscription_Fetch(&list, subscription, 256, max(1, timeout.milliseconds), nil)
            if status == NATS_TIMEOUT { return nil }
            if let error = NATSError.check(status, "fetch") { throw error }
            for index in 0..<Int(list.Count) {
                if let message = list.Msgs[index] { buffered.append(message) }
                list.Msgs[index] = nil
            }
            natsMsgList_Destroy(&list)
            buffered.reverse()
            if buffered.isEmpty { return nil }
        }
        let message = buffered.removeLast()
        defer { natsMsg_Destroy(message) }
        let result = TailedMessage(subject: String(cString: natsMsg_GetSubject(message)), body: Self.body(of: message), headers: Self.headers(of: message))
        if let error = NATSError.check(natsMsg_Ack(message, nil), "ack") { throw error }
        return result
    }

    /// Hands fetched-but-unreturned messages back (nak: redelivered at once,
    /// so a durable resumes in order) and closes the connection.
    public func close() {
        guard !closed else { return }
        closed = true
        for message in buffered.reversed() {
            natsMsg_Nak(message, nil)
            natsMsg_Destroy(message)
        }
        buffered.removeAll()
        natsConnection_FlushTimeout(link.connection, 1000)
        natsSubscription_Destroy(subscription)
        link.close()
    }

    private static func body(of message: OpaquePointer) -> [UInt8] {
        let length = Int(natsMsg_GetDataLength(message))
        guard length > 0, let data = natsMsg_GetData(message) else { return [] }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    private static func headers(of message: OpaquePointer) -> [String: String] {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(message, &keys, &count) == NATS_OK, let keys else { return [:] }
        defer { free(keys) }
        var headers: [String: String] = [:]
        for index in 0..<Int(count) {
            guard let key = keys[index] else { continue }
            var value: UnsafePointer<CChar>?
            if natsMsgHeader_Get(message, key, &value) == NATS_OK, let value {
                headers[String(cString: key)] = String(cString: value)
            }
        }
        return headers
    }
}

/// A stream's size, as its server reports it.
public struct JetStreamState: Sendable, Equatable {
    public var messages: UInt64
    public var firstSequence: UInt64
    public var lastSequence: UInt64

    public static func of(stream name: String, connection: NATSConnectionOptions) throws(NATSError) -> JetStreamState {
        let link = try NATSLink.connect(connection, events: nil)
        defer { link.close() }
        var state = JetStreamState(messages: 0, firstSequence: 0, lastSequence: 0)
        var code = jsErrCode(0)
        let status = cnats_stream_state(link.jetStream, name, &state.messages, &state.firstSequence, &state.lastSequence, &code)
        if let error = NATSError.check(status, "stream \(name)") { throw error }
        return state
    }
}
