import Crypto
import Dispatch
import Glibc
import Synchronization
import SecureOpsEngine

/// The signed, hash-chained audit log of one state directory
/// (`audit.log`, `audit.key`, `audit.head`; format in `AuditLogFormat`).
///
/// Appends run on one serial Dispatch queue, never on the caller's thread
/// unless it asks to wait (`recordDurably`). The loop thread only calls
/// `record`, which enqueues and returns. While it is open, the log holds an
/// exclusive `flock` so no second process can fork the chain.
///
/// A write that fails (full disk, I/O error) does not stop anything: the
/// record is counted as lost, `health` says so, and once writes work again
/// a `records-lost` record says how many are missing. A partial write is
/// cut back so the next record starts on a line of its own.
public final class AuditLog: Sendable {
    public let directory: String
    public let logPath: String
    public let keyPath: String
    public let headPath: String
    /// What `open` found and did, for the caller's log lines.
    public let notes: OpenNotes

    /// Records waiting for the writer at most; beyond it ordinary records
    /// are dropped and counted (durable ones are never dropped).
    public static let maxPending = 4096

    private let key: KeyBox
    private let queue = DispatchQueue(label: "secureops.audit-log")
    /// Only touched on `queue`.
    private let chain: Locked<Chain>
    /// Read from any thread (status on the loop thread): never held across I/O.
    private let healthState: Locked<Health>
    private let pending = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let report: @Sendable (String) -> Void

    private struct Chain {
        var fd: Int32
        var nextSeq: UInt64
        var prev: String
        var committedBytes: Int
        var lostToErrors = 0
        var closed = false
    }

    /// How the log is doing, for `status` and the audit.
    public struct Health: Sendable, Equatable {
        public var healthy = true
        /// The last write failure, while unhealthy.
        public var lastError: String?
        /// Records written (the last sequence number).
        public var records: UInt64 = 0
        /// Records lost to write failures or a full queue since start.
        public var lost = 0
    }

    /// What `open` found.
    public struct OpenNotes: Sendable {
        public var createdKey = false
        public var createdLog = false
        /// A damaged log (or one whose key was gone) moved aside, and why.
        public var movedAside: (path: String, reason: String)?
        /// Files readable or writable by others than their owner.
        public var loosePermissions: [(path: String, mode: mode_t)] = []
    }

    public enum OpenFailure: Error, CustomStringConvertible {
        case key(AuditKey.Failure)
        case io(AuditLogIOError)
        case notAFile(String)
        case wrongOwner(path: String, owner: UInt32, expected: UInt32)
        case inUse(String)

        public var description: String {
            switch self {
            case .key(let failure): "audit key: \(failure)"
            case .io(let error): "audit log: \(error)"
            case .notAFile(let path): "\(path) is not a regular file (a symlink or something else); refusing to append to it"
            case .wrongOwner(let path, let owner, let expected):
                "\(path) is owned by uid \(owner), not uid \(expected): run as the daemon's user, or inspect the file and 'chown \(expected) \(path)' if it is genuine"
            case .inUse(let path): "\(path) is locked by another process: is secureopsd running with this state directory? Stop it first"
            }
        }
    }

    /// Opens (creating at first use) the log of `directory`, which must
    /// exist. Continues the chain after its last record once the tail
    /// checks out; a log whose tail is damaged, whose head is missing or
    /// ahead of it, or whose key is gone is renamed `audit.log.broken-<ms>`
    /// (evidence kept) and a new chain starts with a `log-reset` record.
    public static func open(
        directory: String, owner: UInt32 = geteuid(), report: @escaping @Sendable (String) -> Void
    ) throws(OpenFailure) -> AuditLog {
        let logPath = directory + "/" + AuditLogFormat.logFileName
        let keyPath = directory + "/" + AuditLogFormat.keyFileName
        let headPath = directory + "/" + AuditLogFormat.headFileName
        var notes = OpenNotes()

        // A log without its key can never be verified again; keep it aside.
        if !LogFileIO.exists(keyPath) && fileSize(logPath) ?? 0 > 0 {
            notes.movedAside = try moveAside(logPath: logPath, headPath: headPath, reason: "\(AuditLogFormat.keyFileName) was missing, so the log could not be verified or continued")
        }
        let loaded: AuditKey.Loaded
        do {
            loaded = try AuditKey.load(path: keyPath, owner: owner, create: true)
        } catch {
            throw .key(error)
        }
        notes.createdKey = loaded.created
        if loaded.mode & 0o077 != 0 { notes.loosePermissions.append((keyPath, loaded.mode)) }

        var opened = try openForAppend(logPath: logPath, owner: owner)
        var tail: (seq: UInt64, hash: String)?
        switch inspectTail(fd: opened.fd, size: opened.size, headPath: headPath, key: loaded.key) {
        case .empty:
            break
        case .continues(let seq, let hash):
            tail = (seq, hash)
        case .damaged(let damage):
            flock(opened.fd, LOCK_UN)
            Glibc.close(opened.fd)
            notes.movedAside = try moveAside(logPath: logPath, headPath: headPath, reason: damage)
            opened = try openForAppend(logPath: logPath, owner: owner)
        }
        notes.createdLog = opened.size == 0
        if opened.mode & 0o077 != 0 { notes.loosePermissions.append((logPath, opened.mode)) }

        let chain = Chain(
            fd: opened.fd, nextSeq: (tail?.seq ?? 0) + 1, prev: tail?.hash ?? AuditLogFormat.genesis,
            committedBytes: opened.size)
        let log = AuditLog(
            directory: directory, logPath: logPath, keyPath: keyPath, headPath: headPath, notes: notes,
            key: loaded.key, chain: chain, report: report)

        if let aside = notes.movedAside {
            log.recordDurably("log-reset", [
                "reason": .string(AuditText.clip(aside.reason)), "previousLog": .string(aside.path),
            ])
        }
        for (path, mode) in notes.loosePermissions {
            log.recordDurably("file-permissions", [
                "path": .string(path), "mode": .string("0" + String(mode, radix: 8)),
                "problem": "readable or writable by group or others; 'audit --fix' or 'chmod 0600' repairs it",
            ])
        }
        return log
    }

    private init(
        directory: String, logPath: String, keyPath: String, headPath: String, notes: OpenNotes,
        key: SymmetricKey, chain: Chain, report: @escaping @Sendable (String) -> Void
    ) {
        self.directory = directory
        self.logPath = logPath
        self.keyPath = keyPath
        self.headPath = headPath
        self.notes = notes
        self.key = KeyBox(key)
        self.chain = Locked(chain)
        healthState = Locked(Health(records: chain.nextSeq - 1))
        self.report = report
    }

    // MARK: - Appending

    /// Appends a record without waiting (safe on the loop thread). When the
    /// writer is `maxPending` records behind, the record is dropped and
    /// counted; a `records-lost` record reports the count later.
    public func record(_ event: String, _ fields: JSONObject) {
        let time = Self.realtimeMilliseconds()
        if pending.add(1, ordering: .relaxed).newValue > Self.maxPending {
            pending.subtract(1, ordering: .relaxed)
            dropped.add(1, ordering: .relaxed)
            healthState.withLock { $0.lost += 1 }
            return
        }
        queue.async {
            self.pending.subtract(1, ordering: .relaxed)
            _ = self.chain.withLock { self.append(&$0, event: event, fields: fields, time: time, durable: false) }
        }
    }

    /// Appends a record, fsyncs it and moves `audit.head` to it before
    /// returning; for security-critical events (kill, policy changes).
    /// Returns false if it could not be written. Never call it on the loop
    /// thread.
    @discardableResult
    public func recordDurably(_ event: String, _ fields: JSONObject) -> Bool {
        let time = Self.realtimeMilliseconds()
        return queue.sync {
            chain.withLock { append(&$0, event: event, fields: fields, time: time, durable: true) }
        }
    }

    /// Waits until every record enqueued so far is written.
    public func flush() {
        queue.sync {}
    }

    /// Writes a last durable record (if given), releases the lock and
    /// closes the file. Later records are ignored. Returns whether the
    /// last record was written.
    @discardableResult
    public func close(finalEvent: String? = nil, fields: JSONObject = [:]) -> Bool {
        let time = Self.realtimeMilliseconds()
        return queue.sync {
            chain.withLock { chain -> Bool in
                guard !chain.closed else { return false }
                var written = true
                if let finalEvent { written = append(&chain, event: finalEvent, fields: fields, time: time, durable: true) }
                flock(chain.fd, LOCK_UN)
                Glibc.close(chain.fd)
                chain.closed = true
                return written
            }
        }
    }

    public var health: Health {
        healthState.withLock { $0 }
    }

    /// Writes one record; on the queue, with the chain locked.
    @discardableResult
    private func append(_ chain: inout Chain, event: String, fields: JSONObject, time: Int64, durable: Bool) -> Bool {
        guard !chain.closed else { return false }
        // First say how many records are missing since the last one written.
        let droppedNow = dropped.exchange(0, ordering: .relaxed)
        if chain.lostToErrors > 0 || droppedNow > 0 {
            let lost: JSONObject = [
                "writeFailures": .number(JSONNumber(chain.lostToErrors)), "queueFull": .number(JSONNumber(droppedNow)),
            ]
            if writeLine(&chain, event: "records-lost", fields: lost, time: time) {
                chain.lostToErrors = 0
            } else {
                dropped.add(droppedNow, ordering: .relaxed)
                lose(&chain)
                return false
            }
        }
        guard writeLine(&chain, event: event, fields: fields, time: time) else {
            lose(&chain)
            return false
        }
        if durable { makeDurable(&chain) }
        return healthState.withLock { $0.healthy }
    }

    private func lose(_ chain: inout Chain) {
        chain.lostToErrors += 1
        healthState.withLock { $0.lost += 1 }
    }

    private func writeLine(_ chain: inout Chain, event: String, fields: JSONObject, time: Int64) -> Bool {
        let line = AuditLogFormat.signedLine(
            seq: chain.nextSeq, timeMilliseconds: time, event: event, fields: fields, prev: chain.prev, key: key.key)
        var bytes = line
        bytes.append(0x0A)
        if let code = LogFileIO.writeAll(chain.fd, bytes) {
            // Cut a partial line back off, or the next record would be glued to it.
            if ftruncate(chain.fd, off_t(chain.committedBytes)) != 0 {
                failed("write failed (\(LogFileIO.errorString(code))) and the partial record could not be removed (\(LogFileIO.errorString(errno)))")
            } else {
                failed("write \(logPath): \(LogFileIO.errorString(code))")
            }
            return false
        }
        chain.committedBytes += bytes.count
        chain.prev = AuditLogFormat.hash(line)
        chain.nextSeq += 1
        let recovered = healthState.withLock { health -> Bool in
            health.records = chain.nextSeq - 1
            defer { health.healthy = true; health.lastError = nil }
            return !health.healthy
        }
        if recovered { report("audit log \(logPath) is writable again") }
        return true
    }

    /// fsync, then move `audit.head` to the last record.
    private func makeDurable(_ chain: inout Chain) {
        if fsync(chain.fd) != 0 {
            failed("fsync \(logPath): \(LogFileIO.errorString(errno))")
            return
        }
        let head = AuditHead(seq: chain.nextSeq - 1, hash: chain.prev)
        do {
            try LogFileIO.replaceAtomically(headPath, with: head.encoded(key: key.key))
        } catch {
            failed("\(error)")
        }
    }

    private func failed(_ message: String) {
        let wasHealthy = healthState.withLock { health -> Bool in
            defer { health.healthy = false; health.lastError = message }
            return health.healthy
        }
        // Once per failure streak: a full disk must not flood the daemon's log.
        if wasHealthy { report("audit log write failed: \(message); the daemon keeps serving, records are being lost until this is fixed") }
    }

    // MARK: - Checking the live log

    /// Verifies the whole chain as written so far (the `deep` audit).
    public func verifyAll() throws(AuditLogIOError) -> AuditLogVerifier.Report {
        // A consistent snapshot: the head file and the byte count change
        // together, only on the queue.
        let (headBytes, committed) = queue.sync { () -> (Result<[UInt8]?, AuditLogIOError>, Int) in
            let committed = chain.withLock { $0.committedBytes }
            return (Result { () throws(AuditLogIOError) in try LogFileIO.readSmallFile(headPath, limit: 4096) }, committed)
        }
        return try AuditLogVerifier(key: key.key).verify(logPath: logPath, head: .contents(try headBytes.get()), byteLimit: committed)
    }

    /// Cheap checks of the live log: the file at the path is still the one
    /// being written, has exactly the bytes written to it, and its last
    /// record verifies. Returns what is wrong, or nil.
    public func checkTail() -> String? {
        queue.sync {
            chain.withLock { chain -> String? in
                guard !chain.closed else { return "the log is closed" }
                var open = stat()
                var named = stat()
                guard fstat(chain.fd, &open) == 0 else { return "fstat: \(LogFileIO.errorString(errno))" }
                guard lstat(logPath, &named) == 0 else {
                    return "\(logPath) is gone (\(LogFileIO.errorString(errno))): it was deleted or renamed while the daemon writes to it"
                }
                if named.st_ino != open.st_ino || named.st_dev != open.st_dev {
                    return "\(logPath) is not the file the daemon writes to: it was replaced"
                }
                if Int(open.st_size) != chain.committedBytes {
                    return "\(logPath) holds \(open.st_size) bytes but the daemon wrote \(chain.committedBytes): it was truncated or appended to by something else"
                }
                guard chain.nextSeq > 1 else { return nil }
                guard let tail = Self.lastLine(fd: chain.fd, size: chain.committedBytes) else {
                    return "the last record cannot be read"
                }
                if AuditLogFormat.hash(tail) != chain.prev { return "the last record is not the one the daemon wrote: it was edited" }
                return nil
            }
        }
    }

    // MARK: - Opening helpers

    private struct Opened {
        var fd: Int32
        var size: Int
        var mode: mode_t
    }

    private static func openForAppend(logPath: String, owner: UInt32) throws(OpenFailure) -> Opened {
        // Read-write: the tail is read back through the same descriptor.
        let fd = Glibc.open(logPath, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw .notAFile(logPath) }
            throw .io(AuditLogIOError(operation: "open", path: logPath, code: errno))
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .io(AuditLogIOError(operation: "stat", path: logPath, code: code))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(fd)
            throw .notAFile(logPath)
        }
        guard info.st_uid == owner else {
            Glibc.close(fd)
            throw .wrongOwner(path: logPath, owner: info.st_uid, expected: owner)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(fd)
            throw .inUse(logPath)
        }
        return Opened(fd: fd, size: Int(info.st_size), mode: info.st_mode & 0o7777)
    }

    private enum TailState {
        case empty
        case continues(seq: UInt64, hash: String)
        case damaged(String)
    }

    /// Whether the chain can be continued after the file's last record:
    /// the last record verifies and agrees with `audit.head`. (The whole
    /// chain is `verify-log`'s and the deep audit's job.)
    private static func inspectTail(fd: Int32, size: Int, headPath: String, key: SymmetricKey) -> TailState {
        let headBytes: [UInt8]?
        do {
            headBytes = try LogFileIO.readSmallFile(headPath, limit: 4096)
        } catch {
            return .damaged("\(error)")
        }
        var head: AuditHead?
        if let headBytes {
            do {
                head = try AuditHead.decode(headBytes, key: key)
            } catch {
                return .damaged("\(error)")
            }
        }
        guard size > 0 else {
            if let head { return .damaged("the log was missing or empty but audit.head records that it reached seq \(head.seq): it was deleted or truncated") }
            return .empty
        }
        guard let line = lastLine(fd: fd, size: size) else {
            return .damaged("its last record is incomplete (no newline) or unreadable: a torn write or a truncation")
        }
        let record: AuditRecord
        do {
            record = try AuditLogFormat.openLine(line[...], key: key)
        } catch {
            return .damaged("its last record does not verify: \(error)")
        }
        let hash = AuditLogFormat.hash(line)
        guard let head else {
            return .damaged("audit.head is missing, so records cut off the end could not be detected")
        }
        if head.seq > record.seq {
            return .damaged("it ends at seq \(record.seq) but audit.head records that it reached seq \(head.seq): records were deleted from the end")
        }
        if head.seq == record.seq && head.hash != hash {
            return .damaged("its last record differs from the one audit.head anchored: it was replaced")
        }
        return .continues(seq: record.seq, hash: hash)
    }

    /// The last complete line of the first `size` bytes (without its
    /// newline), or nil if the file does not end with a newline or the
    /// line is longer than the limit.
    static func lastLine(fd: Int32, size: Int) -> [UInt8]? {
        let window = min(size, AuditLogFormat.maxLineBytes + 2)
        guard let bytes = LogFileIO.pread(fd, offset: size - window, count: window), bytes.count == window,
              bytes.last == 0x0A
        else { return nil }
        let body = bytes.dropLast()
        if let newline = body.lastIndex(of: 0x0A) { return Array(body[(newline + 1)...]) }
        // No newline before it: the line starts the file, or is too long.
        return window == size ? Array(body) : nil
    }

    private static func fileSize(_ path: String) -> Int? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return Int(info.st_size)
    }

    /// Renames the log (and its head) to `*.broken-<ms>`; returns the new
    /// log path and the reason.
    private static func moveAside(logPath: String, headPath: String, reason: String) throws(OpenFailure) -> (path: String, reason: String) {
        let suffix = String(realtimeMilliseconds())
        let directory = LogFileIO.directory(of: logPath)
        let aside = directory + "/" + AuditLogFormat.brokenPrefix + suffix
        guard rename(logPath, aside) == 0 else {
            throw .io(AuditLogIOError(operation: "rename (moving a damaged log aside)", path: logPath, code: errno))
        }
        if LogFileIO.exists(headPath) { rename(headPath, directory + "/audit.head.broken-" + suffix) }
        LogFileIO.syncDirectory(of: logPath)
        return (aside, reason)
    }

    static func realtimeMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

/// `SymmetricKey` is an immutable value that swift-crypto does not mark
/// `Sendable`; it is only ever read.
struct KeyBox: @unchecked Sendable {
    let key: SymmetricKey
    init(_ key: SymmetricKey) { self.key = key }
}
