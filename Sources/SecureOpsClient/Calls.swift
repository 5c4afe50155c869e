/// One call of WIRE.md: the request, and how the frame that answers it is
/// read. Both clients send `request` and hand the frames that come back to
/// `interpret`, so each typed call is written once, here, for both.
///
/// Replies decode straight from the frame's bytes into the call's type: an
/// `ok` frame's payload members sit beside `"type"`, so the payload type
/// decodes from the frame object itself (it ignores the `type` key).
struct Call<Result: Sendable>: Sendable {
    let request: IpcRequest
    let interpret: @Sendable (_ frame: UnsafeRawBufferPointer, _ decoder: FastJSONDecoder) -> Interpreted<Result>

    var verb: String { request.verb.rawValue }
}

/// What a frame read where a reply was expected turned out to be.
enum Interpreted<Result> {
    /// The reply: the call's value, or the error it stands for (an `err`
    /// reply, or a payload that is not what the call returns).
    case reply(Swift.Result<Result, IpcError>)
    /// A pushed frame (an alert or a lag notice), not a reply: the reply is
    /// still to come.
    case pushed
    /// Not a frame of the protocol at all: the connection cannot go on.
    case corrupt(String)
}

extension Call {
    /// A call whose `ok` payload decodes as `Payload`, then becomes the
    /// call's value through `value`.
    init<Payload: Decodable & Sendable>(_ request: IpcRequest, payload: Payload.Type, value: @escaping @Sendable (Payload) -> Result) {
        let verb = request.verb.rawValue
        self.init(request: request) { frame, decoder in
            let reply: ReplyFrame<Payload>
            do {
                reply = try decoder.decode(ReplyFrame<Payload>.self, from: frame)
            } catch {
                return .corrupt("\(error)")
            }
            switch reply {
            case .ok(.success(let payload)): return .reply(.success(value(payload)))
            case .ok(.failure(let error)): return .reply(.failure(.codec("unexpected reply to \(verb): \(error)")))
            case .err(let message): return .reply(.failure(IpcError(serverMessage: message)))
            case .pushed: return .pushed
            }
        }
    }
}

extension Call where Result == IpcResponse {
    /// Any request, answered with the reply frame as it is (an `err` reply
    /// is a value here, not an error).
    static func raw(_ request: IpcRequest) -> Call<IpcResponse> {
        Call(request: request, interpret: interpretAnyFrame)
    }
}

/// Any frame as an `IpcResponse`: a reply unless it is an alert or a lag
/// notice.
func interpretAnyFrame(_ frame: UnsafeRawBufferPointer, _ decoder: FastJSONDecoder) -> Interpreted<IpcResponse> {
    let response: IpcResponse
    do {
        response = try decoder.decode(IpcResponse.self, from: frame)
    } catch {
        return .corrupt("\(error)")
    }
    if case .alert = response { return .pushed }
    if response.isLagNotice { return .pushed }
    return .reply(.success(response))
}

/// The typed calls of WIRE.md, one per request type; the clients' `ping()`,
/// `status()`, ... are one line each over these.
enum TypedCall {
    static let ping = Call(.ping, payload: NoPayload.self) { _ in }
    static let status = Call(.status, payload: MonitorStatus.self) { $0 }
    static let reloadPolicy = Call(.reloadPolicy, payload: ReloadResult.self) { $0.policyVersion }

    static func publish(_ alert: AlertInput) -> Call<UInt64> {
        Call(.publish(alert), payload: PublishResult.self) { $0.sequence }
    }

    static func subscribe(since: UInt64?) -> Call<UInt64> {
        Call(.subscribe(since: since), payload: SubscribeResult.self) { $0.next }
    }

    static func alerts(limit: Int?) -> Call<[MonitorAlert]> {
        Call(.alerts(limit: limit), payload: AlertsResult.self) { $0.alerts }
    }

    static func kill(reason: String?) -> Call<UInt64> {
        Call(.kill(reason: reason), payload: KillResult.self) { $0.sequence }
    }

    static func audit(_ options: AuditOptions) -> Call<AuditReport> {
        Call(.audit(options), payload: AuditReport.self) { $0 }
    }
}

/// A frame where a reply was expected, with an `ok` payload decoded as
/// `Payload` in the same pass.
enum ReplyFrame<Payload: Decodable>: Decodable {
    /// An `ok` frame; a payload that does not decode as `Payload` is the
    /// call's error, not the connection's.
    case ok(Result<Payload, any Error>)
    /// An `err` frame that is not a lag notice.
    case err(String)
    /// An alert or a lag notice.
    case pushed

    private enum CodingKeys: String, CodingKey {
        case type, message, skipped
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let tag = try container.decode(String.self, forKey: .type)
        switch tag {
        case "ok":
            self = .ok(Result { try Payload(from: decoder) })
        case "err":
            // A lag notice carries `skipped` (WIRE.md, extensions).
            if try container.decodeIfPresent(UInt64.self, forKey: .skipped) != nil {
                self = .pushed
            } else {
                self = .err(try container.decode(String.self, forKey: .message))
            }
        case "alert":
            self = .pushed
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container,
                debugDescription: "unknown response type \(jsonQuoted(tag)); expected ok, err or alert")
        }
    }
}

/// The payload of a reply whose members nobody reads (`ping`).
struct NoPayload: Decodable, Sendable {}

extension IpcError {
    /// The error an `err` reply stands for: `unauthorized` when the daemon
    /// refused the peer or the request, else `server`.
    init(serverMessage message: String) {
        self = message.hasPrefix("not authorized") ? .unauthorized(message) : .server(message)
    }

    /// Whether reconnecting may help: the connection broke or could not be
    /// made. Not when the server was refused (untrusted), refused us, or
    /// spoke something other than the protocol.
    var isWorthReconnecting: Bool {
        switch self {
        case .transport, .timedOut, .connectionLost: true
        case .codec, .unauthorized, .unsupportedPlatform, .server, .untrustedServer, .reconnectFailed: false
        }
    }
}

/// The `ok` payload of `publish`.
public struct PublishResult: Decodable, Sendable { public var sequence: UInt64 }
/// The `ok` payload of `subscribe`.
public struct SubscribeResult: Decodable, Sendable { public var subscribed: Bool; public var next: UInt64 }
/// The `ok` payload of `alerts`.
public struct AlertsResult: Decodable, Sendable { public var alerts: [MonitorAlert] }
/// The `ok` payload of `kill`.
public struct KillResult: Decodable, Sendable { public var killed: Bool; public var sequence: UInt64 }
/// The `ok` payload of `reloadPolicy`.
public struct ReloadResult: Decodable, Sendable { public var policyVersion: Int }
