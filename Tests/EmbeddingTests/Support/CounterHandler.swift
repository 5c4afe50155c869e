import Glibc
import SecureOpsEngine

/// A protocol of its own, to embed: named counters.
///
/// ```
/// {"op":"add","name":"x","by":2}   -> {"ok":true,"tag":"a","value":2}   and broadcasts
///                                     {"event":"changed","sequence":N,"tag":"a","name":"x","value":2}
/// {"op":"get","name":"x"}          -> {"ok":true,"tag":"a","value":2}
/// {"op":"watch","since":N}         -> {"ok":true,"next":N,"epoch":"…"} then the broadcasts
/// {"op":"slow"}                    -> offloaded, answers after 200 ms
/// {"op":"fail"}                    -> throws inline          (an err frame)
/// {"op":"failLater"}               -> throws when offloaded  (an err frame)
/// {"op":"bye"}                     -> answers, then closes the connection
/// ```
///
/// `Request` adopts `FastJSONDecodable` when `Fast` is true (the two request
/// types below), so both decoding paths serve a real engine.
final class CounterHandler<Request: CounterRequest>: RequestHandler {
    let tag: String
    private var counters: [String: Int] = [:]

    init(tag: String) {
        self.tag = tag
    }

    func admit(_ connection: ConnectionInfo) -> Admission {
        // Same user only: the kernel's word, not the client's.
        connection.credentials?.uid == getuid() ? .admit : .refuse("only uid \(getuid()) may use this server")
    }

    func handle(_ request: Request, context: RequestContext) throws -> Reply {
        let tag = self.tag
        switch request.op {
        case "add":
            guard let name = request.name else { throw CounterError("add needs a name") }
            let value = counters[name, default: 0] + (request.by ?? 1)
            counters[name] = value
            let sequence = context.publish { sequence, _, writer in
                writer.beginObject()
                writer.key("event")
                writer.string("changed")
                writer.key("sequence")
                writer.uint(sequence)
                writer.key("tag")
                writer.string(tag)
                writer.key("name")
                writer.string(name)
                writer.key("value")
                writer.int(value)
                writer.endObject()
                writer.newline()
            }
            answer(context, value: value, sequence: sequence)
            return .respond
        case "get":
            answer(context, value: counters[request.name ?? ""] ?? 0)
            return .respond
        case "watch":
            let next = context.subscribe(since: request.since)
            context.response.beginObject()
            context.response.key("ok")
            context.response.bool(true)
            context.response.key("next")
            context.response.uint(next)
            context.response.key("epoch")
            context.response.string(context.epoch.description)
            context.response.endObject()
            context.response.newline()
            return .respond
        case "slow":
            return .offload {
                usleep(200_000)
                return OffloadedReply.writing { writer in
                    writer.beginObject()
                    writer.key("ok")
                    writer.bool(true)
                    writer.key("slow")
                    writer.bool(true)
                    writer.endObject()
                    writer.newline()
                }
            }
        case "fail":
            throw CounterError("fail was asked for")
        case "failLater":
            return .offload { throw CounterError("failLater was asked for") }
        case "bye":
            answer(context, value: 0)
            return .respondAndClose
        default:
            throw CounterError("unknown op \(request.op)")
        }
    }

    private func answer(_ context: RequestContext, value: Int, sequence: UInt64? = nil) {
        context.response.beginObject()
        context.response.key("ok")
        context.response.bool(true)
        context.response.key("tag")
        context.response.string(tag)
        context.response.key("value")
        context.response.int(value)
        if let sequence {
            context.response.key("sequence")
            context.response.uint(sequence)
        }
        context.response.endObject()
        context.response.newline()
    }
}

struct CounterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

protocol CounterRequest: Decodable {
    var op: String { get }
    var name: String? { get }
    var by: Int? { get }
    var since: UInt64? { get }
}

/// Plain `Decodable` (synthesized): decoded through `init(from:)`.
struct PlainCounterRequest: CounterRequest {
    var op: String
    var name: String?
    var by: Int?
    var since: UInt64?
}

/// Adopts `FastJSONDecodable`: decoded through `init(fastJSON:)`.
struct FastCounterRequest: CounterRequest, FastJSONDecodable {
    var op: String
    var name: String?
    var by: Int?
    var since: UInt64?

    enum CodingKeys: String, CodingKey { case op, name, by, since }

    init(from decoder: any Decoder) throws {
        try self.init(container: decoder.container(keyedBy: CodingKeys.self))
    }

    init(fastJSON decoder: FastJSONValueDecoder) throws {
        try self.init(container: decoder.keyedContainer(keyedBy: CodingKeys.self))
    }

    private init<C: KeyedDecodingContainerProtocol>(container: C) throws where C.Key == CodingKeys {
        op = try container.decode(String.self, forKey: .op)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        by = try container.decodeIfPresent(Int.self, forKey: .by)
        since = try container.decodeIfPresent(UInt64.self, forKey: .since)
    }
}
