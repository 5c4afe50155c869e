import Foundation
import Glibc
import Logging
import SecureOpsClient
import SecureOpsEngine
@_exported import TestSupport

/// A quiet logger: tests that start many engines would otherwise flood the
/// output with start-up lines.
func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

/// The backend every engine of this run serves on: `make test` runs the
/// suites once per backend through SECUREOPS_TEST_IO_BACKEND.
let backendUnderTest: IOBackendChoice = ProcessInfo.processInfo.environment["SECUREOPS_TEST_IO_BACKEND"]
    .flatMap(IOBackendChoice.init(rawValue:)) ?? .auto

/// Starts an engine with `handler` on `path`.
func startEngine<Handler: RequestHandler>(
    _ handler: sending Handler, path: String, configure: (inout EngineConfiguration) -> Void = { _ in }
) throws -> Engine<Handler> {
    var configuration = EngineConfiguration(socketPath: path)
    configuration.threadName = "embed-test"
    configuration.shutdownGracePeriod = .seconds(2)
    configuration.ioBackend = backendUnderTest
    configure(&configuration)
    let engine = try Engine<Handler>(configuration: configuration, logger: testLogger("embedding-test"))
    try engine.start(handler: handler)
    return engine
}

/// A test server for the async client: the SecureOps wire protocol
/// (WIRE.md) implemented on the public embedding API only, with knobs the
/// real daemon does not have: `audit` sleeps on the Dispatch pool for
/// `audit.deep ? 2 s : 0.3 s` (a slow request), `kill` throws (a failing
/// handler).
final class WireHandler: RequestHandler {
    typealias Request = IpcRequest

    func admit(_ connection: ConnectionInfo) -> Admission { .admit }

    func handle(_ request: IpcRequest, context: RequestContext) throws -> Reply {
        switch request {
        case .ping:
            context.response.bytes.append(contentsOf: OkFrame.empty)
            return .respond
        case .publish(let alert):
            let sequence = context.publish { sequence, milliseconds, writer in
                AlertFrame.write(sequence: sequence, timestampMilliseconds: milliseconds, alert: alert, into: &writer)
            }
            ok(context) { writer in
                writer.key("sequence")
                writer.uint(sequence)
            }
            return .respond
        case .subscribe(let since):
            let next = context.subscribe(since: since)
            ok(context) { writer in
                writer.key("subscribed")
                writer.bool(true)
                writer.key("next")
                writer.uint(next)
            }
            return .respond
        case .status:
            // Just what the async client reads: the stream's epoch.
            ok(context) { writer in
                writer.key("running")
                writer.bool(true)
                writer.key("epoch")
                writer.string(context.epoch.description)
            }
            return .respond
        case .alerts(let limit):
            context.response.beginObject()
            context.response.key("type")
            context.response.string("ok")
            context.response.key("alerts")
            context.response.beginArray()
            context.forEachRetainedFrame(newest: limit ?? 100) { _, frame in
                AlertFrame.writeAlertObject(fromFrame: frame, into: &context.response)
            }
            context.response.endArray()
            context.response.endObject()
            context.response.newline()
            return .respond
        case .audit(let options):
            let delay: useconds_t = options.deep ? 2_000_000 : 300_000
            return .offload {
                usleep(delay)
                return OffloadedReply(bytes: OkFrame.empty)
            }
        case .kill:
            throw WireHandlerError.refused
        case .reloadPolicy:
            throw WireHandlerError.unsupported(request.verb.rawValue)
        }
    }

    private func ok(_ context: RequestContext, _ body: (inout JSONWriter) -> Void) {
        context.response.beginObject()
        context.response.key("type")
        context.response.string("ok")
        body(&context.response)
        context.response.endObject()
        context.response.newline()
    }
}

enum WireHandlerError: Error, CustomStringConvertible {
    case refused
    case unsupported(String)

    var description: String {
        switch self {
        case .refused: "this test server refuses kill"
        case .unsupported(let verb): "this test server does not implement \(verb)"
        }
    }
}

extension AlertInput {
    static func test(_ message: String, severity: Severity = .info) -> AlertInput {
        AlertInput(severity: severity, source: "embedding-test", message: message)
    }
}

/// Reads frames from a blocking connection as text.
extension SecureOpsConnection {
    /// The next frame as text; nil at the end of the stream. Throws if
    /// nothing arrives within `timeout` seconds.
    func readLine(timeout: Double = 10) throws -> String? {
        try readFrame(timeout: timeout).map { String(decoding: $0, as: UTF8.self) }
    }

    /// True if no frame (and no end of stream) arrives within `seconds`.
    func staysQuiet(for seconds: Double) -> Bool {
        do {
            _ = try readFrame(timeout: seconds)
            return false
        } catch {
            return true
        }
    }

    func send(line: String) throws {
        try sendRaw(Array((line + "\n").utf8))
    }
}
