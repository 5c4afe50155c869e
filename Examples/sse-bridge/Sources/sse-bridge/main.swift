import Glibc
import HTTPTypes
import Hummingbird
import Logging
import SecureOpsClient
import SecureOpsEngine
import ServiceLifecycle

// sse-bridge [--daemon-socket PATH] [--host 127.0.0.1] [--port 8080]
//
// GET /                  the live viewer (one HTML page)
// GET /events?since=N    the alert stream as Server-Sent Events; without
//                        `since`, the retained alerts first (since=0), or
//                        after the browser's Last-Event-ID when it resumes

var arguments = CommandLine.arguments.dropFirst()
var daemonSocket = WireDefaults.socketPath()
var host = "127.0.0.1"
var port = 8080
while let argument = arguments.popFirst() {
    switch (argument, arguments.popFirst()) {
    case ("--daemon-socket", let value?): daemonSocket = value
    case ("--host", let value?): host = value
    case ("--port", let value?) where Int(value) != nil: port = Int(value)!
    default:
        print("usage: sse-bridge [--daemon-socket PATH] [--host 127.0.0.1] [--port 8080]")
        exit(2)
    }
}

let logger = Logger(label: "sse-bridge")
let lastEventID = HTTPField.Name("Last-Event-ID")!
let router = Router()

router.get("/") { _, _ in
    Response(
        status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: Viewer.html)))
}

router.get("/events") { request, _ -> Response in
    let explicit = request.uri.queryParameters.get("since", as: UInt64.self)
    let resume = ServerSentEvents.resumePoint(lastEventID: request.headers[lastEventID])
    // One daemon connection per browser: a subscription that reconnects by
    // itself when secureopsd restarts, and ends when the browser goes.
    let client = try await SecureOpsAsyncClient.connect(to: daemonSocket)
    var subscription = try await client.subscribe(since: explicit ?? resume?.sequence ?? 0, reconnect: .default)
    var restartedSinceBrowserLeft = false
    if let resume, explicit == nil, subscription.initialEpoch != resume.epoch {
        // The browser's last alert came from an earlier daemon run.
        subscription.cancel()
        subscription = try await client.subscribe(since: 0, reconnect: .default)
        restartedSinceBrowserLeft = true
    }
    let stream = subscription, announceRestart = restartedSinceBrowserLeft
    return Response(
        status: .ok,
        headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
        body: ResponseBody { writer in
            defer { stream.cancel() }
            try await writer.write(ByteBuffer(string: ServerSentEvents.preamble))
            var epoch = stream.initialEpoch
            if announceRestart {
                try await writer.write(ByteBuffer(string: ServerSentEvents.encode(.restarted(epoch: epoch), epoch: epoch)))
            }
            // An event stream never ends by itself: on SIGTERM/SIGINT the
            // subscription is cancelled, so the response completes and the
            // server's graceful shutdown does not wait for it forever.
            try await withGracefulShutdownHandler {
                for try await event in stream {
                    if case .restarted(let fresh) = event { epoch = fresh }
                    // Throws once the browser has gone, which ends the loop.
                    try await writer.write(ByteBuffer(string: ServerSentEvents.encode(event, epoch: epoch)))
                }
            } onGracefulShutdown: {
                stream.cancel()
            }
            try await writer.finish(nil)
        })
}

let app = Application(
    router: router,
    configuration: .init(address: .hostname(host, port: port), serverName: "sse-bridge"),
    logger: logger)
logger.notice("sse-bridge: http://\(host):\(port)/ shows the alerts of \(daemonSocket)")
try await app.runService()
