import CNATS
import Glibc
import SecureOpsSystem

/// What a link reports about its connection and its publishes. Called on
/// libnats' threads: implementations take a lock and return.
protocol NATSLinkEvents: AnyObject, Sendable {
    func linkDisconnected()
    func linkReconnected(server: String?)
    func linkClosed()
    func publishAcknowledged(sequence: UInt64)
    func publishFailed(sequence: UInt64, error: String)
}

/// libnats calls back with a `void *closure`. Ours is a number looked up
/// here, never a pointer to a Swift object: a callback that libnats runs
/// after its owner has gone finds nothing instead of freed memory.
enum CallbackRegistry {
    private struct Entry {
        weak var events: (any NATSLinkEvents)?
    }

    private struct Table {
        var next: UInt = 1
        var entries: [UInt: Entry] = [:]
    }

    private static let table = Locked(Table())

    static func register(_ events: any NATSLinkEvents) -> UInt {
        table.withLock { table in
            let id = table.next
            table.next += 1
            table.entries[id] = Entry(events: events)
            return id
        }
    }

    static func unregister(_ id: UInt) {
        table.withLock { _ = $0.entries.removeValue(forKey: id) }
    }

    static func lookup(_ closure: UnsafeMutableRawPointer?) -> (any NATSLinkEvents)? {
        let id = UInt(bitPattern: closure)
        return table.withLock { $0.entries[id]?.events }
    }

    static func closure(_ id: UInt) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: id)
    }
}

/// One connection to NATS with its JetStream context. Used from one thread
/// at a time (the forwarder's or the tail's); libnats runs the callbacks
/// on its own threads and they reach the owner through the registry.
final class NATSLink: @unchecked Sendable {
    /// `natsConnection *` and `jsCtx *`.
    let connection: OpaquePointer
    let jetStream: OpaquePointer
    private let registration: UInt?
    /// The checked `.creds` file libnats reads again at every reconnect.
    private let credentials: CredentialFile?
    private var closed = false

    private init(connection: OpaquePointer, jetStream: OpaquePointer, registration: UInt?, credentials: CredentialFile?) {
        self.connection = connection
        self.jetStream = jetStream
        self.registration = registration
        self.credentials = credentials
    }

    deinit { close() }

    /// Connects (blocking at most the connect timeout per server) and
    /// makes the JetStream context. With `events`, reconnects are the
    /// library's (forever, with jitter) and reported; acks of async
    /// publishes go to `events` too, at most `maxPending` in flight.
    static func connect(_ options: NATSConnectionOptions, events: (any NATSLinkEvents)?, maxPending: Int = 0) throws(NATSError) -> NATSLink {
        let (natsOptions, credentials) = try makeOptions(options)
        defer { natsOptions_Destroy(natsOptions) }
        let registration = events.map { CallbackRegistry.register($0) }
        if let registration {
            let closure = CallbackRegistry.closure(registration)
            natsOptions_SetDisconnectedCB(natsOptions, { _, closure in CallbackRegistry.lookup(closure)?.linkDisconnected() }, closure)
            natsOptions_SetReconnectedCB(natsOptions, { connection, closure in
                CallbackRegistry.lookup(closure)?.linkReconnected(server: NATSLink.connectedURL(connection))
            }, closure)
            natsOptions_SetClosedCB(natsOptions, { _, closure in CallbackRegistry.lookup(closure)?.linkClosed() }, closure)
        }
        var connection: OpaquePointer?
        let servers = options.servers.joined(separator: ", ")
        if let error = NATSError.check(natsConnection_Connect(&connection, natsOptions), "connect to \(servers)") {
            if let registration { CallbackRegistry.unregister(registration) }
            throw error
        }
        var jsOptions = jsOptions()
        jsOptions_Init(&jsOptions)
        if let registration {
            jsOptions.PublishAsync.MaxPending = Int64(maxPending)
            jsOptions.PublishAsync.AckHandlerClosure = CallbackRegistry.closure(registration)
            jsOptions.PublishAsync.AckHandler = { _, message, ack, failure, closure in
                if let events = CallbackRegistry.lookup(closure) {
                    let sequence = cnats_alert_sequence(message)
                    if ack != nil {
                        events.publishAcknowledged(sequence: sequence)
                    } else if let failure {
                        let text = failure.pointee.ErrText.map { String(cString: $0) }
                            ?? String(cString: natsStatus_GetText(failure.pointee.Err))
                        events.publishFailed(sequence: sequence, error: text)
                    }
                }
                // The handler owns the message (libnats' contract for AckHandler).
                natsMsg_Destroy(message)
            }
        }
        var jetStream: OpaquePointer?
        if let error = NATSError.check(natsConnection_JetStream(&jetStream, connection, &jsOptions), "JetStream context") {
            if let registration { CallbackRegistry.unregister(registration) }
            natsConnection_Destroy(connection)
            throw error
        }
        return NATSLink(connection: connection!, jetStream: jetStream!, registration: registration, credentials: credentials)
    }

    /// The URL of the server connected to now, nil while disconnected.
    var connectedServer: String? { NATSLink.connectedURL(connection) }

    static func connectedURL(_ connection: OpaquePointer?) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        guard natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK, buffer[0] != 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Closes the connection. Callbacks stop first (unregistered), so a
    /// deliberate close is not reported as a lost connection.
    func close() {
        guard !closed else { return }
        closed = true
        if let registration { CallbackRegistry.unregister(registration) }
        jsCtx_Destroy(jetStream)
        natsConnection_Destroy(connection)
    }

    /// The library's options; and the checked `.creds` file, which must
    /// stay open as long as a connection made with them.
    private static func makeOptions(_ options: NATSConnectionOptions) throws(NATSError) -> (OpaquePointer, CredentialFile?) {
        var created: OpaquePointer?
        if let error = NATSError.check(natsOptions_Create(&created), "NATS options") { throw error }
        let natsOptions = created!
        func check(_ status: natsStatus, _ what: @autoclosure () -> String) throws(NATSError) {
            guard status != NATS_OK else { return }
            natsOptions_Destroy(natsOptions)
            var error = NATSError(what(), status: status)
            error.needsOperator = true
            throw error
        }
        let copies = options.servers.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        var servers = copies.map { UnsafePointer<CChar>($0) }
        try check(natsOptions_SetServers(natsOptions, &servers, Int32(servers.count)), "server list \(options.servers)")
        // Seeds in the order given: the first is the preferred one.
        try check(natsOptions_SetNoRandomize(natsOptions, true), "server order")
        try check(natsOptions_SetTimeout(natsOptions, options.connectTimeout.milliseconds), "connect timeout")
        try check(natsOptions_SetName(natsOptions, options.name), "connection name")
        // Once connected the library reconnects by itself, forever; only
        // the first connection is the owner's to retry.
        try check(natsOptions_SetAllowReconnect(natsOptions, true), "reconnect")
        try check(natsOptions_SetMaxReconnect(natsOptions, -1), "reconnect")
        try check(natsOptions_SetReconnectWait(natsOptions, 250), "reconnect wait")
        try check(natsOptions_SetReconnectJitter(natsOptions, 100, 500), "reconnect jitter")
        // A server that vanished without a FIN is noticed in ~15 s, not the
        // default 2 minutes.
        try check(natsOptions_SetPingInterval(natsOptions, 5_000), "ping interval")
        try check(natsOptions_SetMaxPingsOut(natsOptions, 3), "pings out")
        // Every file is checked and read through a descriptor
        // (`CredentialFile`); libnats gets the contents, never the path.
        func read(_ path: String, _ kind: CredentialFile.Kind, _ what: String) throws(NATSError) -> String {
            do {
                return try CredentialFile.read(path, kind: kind, what: what)
            } catch {
                natsOptions_Destroy(natsOptions)
                throw error
            }
        }
        if let ca = options.caFile {
            try check(natsOptions_SetSecure(natsOptions, true), "TLS")
            let pem = try read(ca, .certificate, "CA file")
            try check(natsOptions_SetCATrustedCertificates(natsOptions, pem), "load CA file \(ca)")
        }
        if let certificate = options.certificateFile {
            guard let key = options.keyFile else {
                natsOptions_Destroy(natsOptions)
                throw NATSError("client certificate \(certificate)", text: "a client certificate needs its key file", needsOperator: true)
            }
            let chain = try read(certificate, .certificate, "client certificate")
            let keyPEM = try read(key, .secret, "client key")
            try check(natsOptions_SetCertificatesChain(natsOptions, chain, keyPEM), "load client certificate \(certificate) and key \(key)")
        }
        var credentials: CredentialFile?
        if let path = options.credentialsFile {
            do {
                credentials = try CredentialFile.open(path, kind: .secret, what: "credentials file")
            } catch {
                natsOptions_Destroy(natsOptions)
                throw error
            }
            try check(natsOptions_SetUserCredentialsFromFiles(natsOptions, credentials!.procPath, nil), "credentials file \(path)")
        }
        if let tokenFile = options.tokenFile {
            let token = trimmed(try read(tokenFile, .secret, "token file"))
            try check(natsOptions_SetToken(natsOptions, token), "token from \(tokenFile)")
        }
        if let user = options.user {
            let password = try options.passwordFile.map { path throws(NATSError) in trimmed(try read(path, .secret, "password file")) }
            try check(natsOptions_SetUserInfo(natsOptions, user, password), "user \(user)")
        }
        return (natsOptions, credentials)
    }

    /// A secret without the whitespace around it (a newline at the end).
    private static func trimmed(_ text: String) -> String {
        var text = Substring(text)
        while let last = text.last, last.isWhitespace { text.removeLast() }
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        return String(text)
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
