import Crypto
import Dispatch
import Glibc
import Synchronization
import SecureOpsJSON
import SecureOpsSystem

/// The signed, hash-chained audit log of one state directory
/// (`audit.log`, `audit.key`, `audit.head`; format in `AuditLogFormat`).
///
/// Every file is reached through the state directory's descriptor, never
/// by path, and must be a regular file of the daemon's user that nobody
/// else may write (`StateFile`).
///
/// Appends run on one serial Dispatch queue, never on the caller's thread
/// unless it asks to wait (`recordDurably`). The loop thread only calls
/// `record`, which enqueues and returns. While it is open, the log holds an
/// exclusive `flock` so no second process can fork the chain.
///
/// `audit.head` (signed) names the last record known to be on disk: it is
/// moved after every durable record, and at most `anchorInterval` after any
/// other, so records cut off the end of the file while the daemon is
/// stopped show (`verify-log`) unless they were written in that interval.
///
/// A write that fails (full disk, I/O error) does not stop anything: the
/// record is counted as lost, `health` says so, and once writes work again
/// a `records-lost` record says how many are missing. A partial write is
/// cut back so the next record starts on a line of its own.
public final class AuditLog: Sendable {
    public let directory: OpenedDirectory
    public let logPath: String
    public let keyPath: String
    public let headPath: String
    /// What `open` found and did, for the caller's log lines.
    public let notes: OpenNotes
    /// How long a record that is not durable at once may wait to be anchored.
    public let anchorInterval: Duration

    /// Records waiting for the writer at most; beyond it ordinary records
    /// are dropped and counted (durable ones are never dropped).
    public static let maxPending = 4096
    /// A deep verification reads the whole file at most this often; in
    /// between it verifies only what was written since the last one.
    public static let fullVerificationInterval = Duration.seconds(300)
    /// The records `close(finalEvent:)` ends a run with: a log whose last
    /// record is anything else belongs to a run that did not stop cleanly.
    public static let finalEvents: Set<String> = ["stop", "start-failed", "kill-reset", "kill-reset-failed"]

    private let key: KeyBox
    private let queue = DispatchQueue(label: "secureops.audit-log")
    /// Only touched on `queue`.
    private let chain: Locked<Chain>
    /// Read from any thread (status on the loop thread): never held across I/O.
    private let healthState: Locked<Health>
    private let pending = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let report: @Sendable (String) -> Void
    /// Deep verifications, one at a time; what the last one verified.
    private let verificationQueue = DispatchQueue(label: "secureops.audit-log.verify")
    private let verified = Locked<VerifiedPrefix?>(nil)

    private struct Chain {
        var file: FileDescriptor
        var nextSeq: UInt64
        var prev: String
        var committedBytes: Int
        /// The sequence `audit.head` names.
        var anchoredSeq: UInt64
        var anchorScheduled = false
        var lostToErrors = 0
        var closed = false
    }

    /// What a deep verification proved, to resume from next time.
    private struct VerifiedPrefix {
        var position: AuditLogVerifier.Position
        var records: Int
        var firstTime: String?
        var lastTime: String?
        /// Monotonic time of the last verification from the first record.
        var fullAt: UInt64
        var fullAtWallClock: String
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
        /// The chain could not be continued and a new one was started: why,
        /// and where the old log was kept (nil when there was none to keep).
        public var reset: (reason: String, previousLog: String?)?
        /// The previous run ended without a final record (killed, crashed,
        /// power lost): its last record and the last anchored one.
        public var uncleanEnd: (lastSeq: UInt64, lastEvent: String, anchoredSeq: UInt64)?
        /// Files readable by others than their owner.
        public var loosePermissions: [(path: String, mode: mode_t)] = []
    }

    public enum OpenFailure: Error, CustomStringConvertible {
        case key(AuditKey.Failure)
        case io(SystemError)
        case untrusted(StateFileProblem)
        case inUse(String)

        public var description: String {
            switch self {
            case .key(let failure): "audit key: \(failure)"
            case .io(let error): "audit log: \(error)"
            case .untrusted(let problem): "\(problem)"
            case .inUse(let path): "\(path) is locked by another process: is secureopsd running with this state directory? Stop it first"
            }
        }
    }

    /// Opens (creating at first use) the log of `directory`. Continues the
    /// chain after its last record once the tail checks out. A log whose
    /// tail is damaged, whose head is missing or ahead of it, or whose key
    /// is gone is renamed `audit.log.broken-<ms>` (evidence kept); a key
    /// whose log is gone is tampering too. Either way a new chain starts
    /// with a `log-reset` record that says why. A previous run that ended
    /// without its `stop` record is recorded (`unclean-shutdown`).
    public static func open(
        directory: OpenedDirectory, owner: UInt32 = geteuid(), anchorInterval: Duration = .seconds(1),
        report: @escaping @Sendable (String) -> Void
    ) throws(OpenFailure) -> AuditLog {
        var notes = OpenNotes()
        let keyExisted = directory.exists(AuditLogFormat.keyFileName)
        let logSize = (try? directory.statusOf(AuditLogFormat.logFileName))??.size ?? 0

        // A log without its key can never be verified again; keep it aside.
        if !keyExisted && logSize > 0 {
            notes.reset = try moveAside(directory, reason: "\(AuditLogFormat.keyFileName) was missing, so the log could not be verified or continued")
        }
        let loaded: AuditKey.Loaded
        do {
            loaded = try AuditKey.load(in: directory, owner: owner, create: true)
        } catch {
            throw .key(error)
        }
        notes.createdKey = loaded.created
        if loaded.mode & 0o077 != 0 { notes.loosePermissions.append((directory.pathOf(AuditLogFormat.keyFileName), loaded.mode)) }

        var opened = try openForAppend(directory, owner: owner)
        var tail: (seq: UInt64, hash: String)?
        var anchoredSeq: UInt64 = 0
        switch inspectTail(opened.file, size: opened.size, directory: directory, owner: owner, key: loaded.key) {
        case .empty:
            if keyExisted && notes.reset == nil {
                notes.reset = (
                    "\(AuditLogFormat.logFileName) was missing or empty although \(AuditLogFormat.keyFileName) exists: the log and its head were deleted or emptied (or the very first start was interrupted)",
                    nil)
            }
        case .continues(let seq, let hash, let event, let headSeq):
            tail = (seq, hash)
            anchoredSeq = headSeq
            if !finalEvents.contains(event) {
                notes.uncleanEnd = (seq, event, headSeq)
            }
        case .damaged(let damage):
            flock(opened.file.raw, LOCK_UN)
            opened.file.close()
            notes.reset = try moveAside(directory, reason: damage)
            opened = try openForAppend(directory, owner: owner)
        }
        notes.createdLog = opened.size == 0 && notes.reset == nil
        if opened.mode & 0o077 != 0 { notes.loosePermissions.append((directory.pathOf(AuditLogFormat.logFileName), opened.mode)) }

        let chain = Chain(
            file: opened.file, nextSeq: (tail?.seq ?? 0) + 1, prev: tail?.hash ?? AuditLogFormat.genesis,
            committedBytes: opened.size, anchoredSeq: anchoredSeq)
        let log = AuditLog(
            directory: directory, notes: notes, key: loaded.key, chain: chain, anchorInterval: anchorInterval, report: report)

        if let reset = notes.reset {
            log.recordDurably("log-reset", [
                "reason": .string(AuditText.clip(reset.reason)), "previousLog": reset.previousLog.map { .string($0) } ?? .null,
            ])
        }
        if let unclean = notes.uncleanEnd {
            log.recordDurably("unclean-shutdown", [
                "lastSeq": .number(JSONNumber(unclean.lastSeq)), "lastEvent": .string(unclean.lastEvent),
                "anchoredSeq": .number(JSONNumber(unclean.anchoredSeq)),
                "reason": "the previous run has no final record: it was killed, crashed or lost power; records after the anchored one may be missing",
            ])
        }
        for (path, mode) in notes.loosePermissions {
            log.recordDurably("file-permissions", [
                "path": .string(path), "mode": .string("0" + String(mode, radix: 8)),
                "problem": "readable by group or others; 'audit --fix' or 'chmod 0600' repairs it",
            ])
        }
        return log
    }

    private init(
        directory: OpenedDirectory, notes: OpenNotes, key: SymmetricKey, chain: Chain, anchorInterval: Duration,
        report: @escaping @Sendable (String) -> Void
    ) {
        self.directory = directory
        logPath = directory.pathOf(AuditLogFormat.logFileName)
        keyPath = directory.pathOf(AuditLogFormat.keyFileName)
        headPath = directory.pathOf(AuditLogFormat.headFileName)
        self.notes = notes
        self.anchorInterval = anchorInterval
        self.key = KeyBox(key)
        self.chain = Locked(chain)
        healthState = Locked(Health(records: chain.nextSeq - 1))
        self.report = report
    }

    // MARK: - Appending

    /// Appends a record without waiting (safe on the loop thread). When the
    /// writer is `maxPending` records behind, the record is dropped and
    /// counted; a `records-lost` record reports the count later. It is
    /// anchored within `anchorInterval`.
    public func record(_ event: String, _ fields: JSONObject) {
        let time = SystemClock.realtimeMilliseconds()
        if pending.add(1, ordering: .relaxed).newValue > Self.maxPending {
            pending.subtract(1, ordering: .relaxed)
            dropped.add(1, ordering: .relaxed)
            healthState.withLock { $0.lost += 1 }
            return
        }
        queue.async {
            self.pending.subtract(1, ordering: .relaxed)
            self.chain.withLock { chain in
                if self.append(&chain, event: event, fields: fields, time: time, durable: false) {
                    self.scheduleAnchor(&chain)
                }
            }
        }
    }

    /// Appends a record, fsyncs it and moves `audit.head` to it before
    /// returning; for security-critical events (kill, policy changes).
    /// Returns false if it could not be written. Never call it on the loop
    /// thread.
    @discardableResult
    public func recordDurably(_ event: String, _ fields: JSONObject) -> Bool {
        let time = SystemClock.realtimeMilliseconds()
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
        precondition(finalEvent.map(Self.finalEvents.contains) ?? true, "a run's last record must be one of AuditLog.finalEvents")
        let time = SystemClock.realtimeMilliseconds()
        return queue.sync {
            chain.withLock { chain -> Bool in
                guard !chain.closed else { return false }
                var written = true
                if let finalEvent {
                    written = append(&chain, event: finalEvent, fields: fields, time: time, durable: true)
                } else if chain.nextSeq - 1 > chain.anchoredSeq {
                    makeDurable(&chain)
                }
                flock(chain.file.raw, LOCK_UN)
                chain.file.close()
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
        if let code = chain.file.writeAll(bytes) {
            // Cut a partial line back off, or the next record would be glued to it.
            if ftruncate(chain.file.raw, off_t(chain.committedBytes)) != 0 {
                failed("write failed (\(String(cString: strerror(code)))) and the partial record could not be removed (\(String(cString: strerror(errno))))")
            } else {
                failed("write \(logPath): \(String(cString: strerror(code)))")
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
        if let code = chain.file.sync() {
            failed("fsync \(logPath): \(String(cString: strerror(code)))")
            return
        }
        let head = AuditHead(seq: chain.nextSeq - 1, hash: chain.prev)
        do {
            try directory.replaceAtomically(AuditLogFormat.headFileName, with: head.encoded(key: key.key))
            chain.anchoredSeq = head.seq
        } catch {
            failed("\(error)")
        }
    }

    /// Anchors records that were not durable within `anchorInterval`; one
    /// pending anchor at a time, so a burst costs one fsync.
    private func scheduleAnchor(_ chain: inout Chain) {
        guard !chain.anchorScheduled else { return }
        chain.anchorScheduled = true
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(anchorInterval.nanosecondsValue))) {
            self.chain.withLock { chain in
                chain.anchorScheduled = false
                if !chain.closed && chain.nextSeq - 1 > chain.anchoredSeq { self.makeDurable(&chain) }
            }
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

    /// What a deep verification found.
    public struct ChainVerification: Sendable {
        public var report: AuditLogVerifier.Report
        /// When only records written since an earlier verification were
        /// read: the first of them, how many were verified before it, and
        /// when the whole file was last read.
        public var resumed: (fromSeq: UInt64, verifiedBefore: Int, fullVerificationAt: String)?
    }

    /// Verifies the chain as written so far (the `deep` audit). Reads the
    /// whole file at most every `fullVerificationInterval`; in between it
    /// checks that the last verified record is unchanged and verifies only
    /// what follows it, so repeated deep audits cost what was written since
    /// the last, not the whole log. One verification runs at a time.
    public func verifyChain() throws(SystemError) -> ChainVerification {
        let result = verificationQueue.sync { () -> Result<ChainVerification, SystemError> in
            Result { () throws(SystemError) -> ChainVerification in try verifyChainSerially() }
        }
        return try result.get()
    }

    private func verifyChainSerially() throws(SystemError) -> ChainVerification {
        // A consistent snapshot: the head file and the byte count change
        // together, only on the queue.
        let snapshot = queue.sync { () -> (Result<[UInt8]?, SystemError>, Int, FileDescriptor?) in
            chain.withLock { chain in
                let head = Result { () throws(SystemError) in try directory.readFile(AuditLogFormat.headFileName, limit: 4096) }
                return (head, chain.committedBytes, chain.closed ? nil : chain.file)
            }
        }
        guard let file = snapshot.2 else { throw SystemError("verify", logPath, code: EBADF) }
        let headBytes = try snapshot.0.get()
        let committed = snapshot.1
        let now = SystemClock.monotonicNanoseconds()
        let verifier = AuditLogVerifier(key: key.key)
        let previous = verified.withLock { $0 }
        var resumeFrom: VerifiedPrefix?
        if let previous, now - previous.fullAt < Self.fullVerificationInterval.nanosecondsValue,
           previous.position.offset <= committed {
            resumeFrom = previous
        }
        var report: AuditLogVerifier.Report
        if let resumeFrom {
            report = try verifier.verify(
                file: file, path: logPath, head: .contents(headBytes), byteLimit: committed, resumingAfter: resumeFrom.position)
            report.records += resumeFrom.records
            if report.firstTime == nil { report.firstTime = resumeFrom.firstTime }
            if report.lastTime == nil { report.lastTime = resumeFrom.lastTime }
        } else {
            report = try verifier.verify(file: file, path: logPath, head: .contents(headBytes), byteLimit: committed, resumingAfter: nil)
        }
        if report.isIntact, let end = report.end {
            let fullAt = resumeFrom?.fullAt ?? now
            let fullAtWallClock = resumeFrom?.fullAtWallClock ?? Self.timestamp(SystemClock.realtimeMilliseconds())
            verified.withLock {
                $0 = VerifiedPrefix(
                    position: end, records: report.records, firstTime: report.firstTime, lastTime: report.lastTime,
                    fullAt: fullAt, fullAtWallClock: fullAtWallClock)
            }
        } else {
            verified.withLock { $0 = nil }
        }
        return ChainVerification(report: report, resumed: resumeFrom.map { ($0.position.nextSeq, $0.records, $0.fullAtWallClock) })
    }

    /// Cheap checks of the live log: the file at the path is still the one
    /// being written, has exactly the bytes written to it, and its last
    /// record verifies. Returns what is wrong, or nil.
    public func checkTail() -> String? {
        queue.sync {
            chain.withLock { chain -> String? in
                guard !chain.closed else { return "the log is closed" }
                let open: FileStatus
                let named: FileStatus?
                do {
                    open = try chain.file.status(path: logPath)
                    named = try directory.statusOf(AuditLogFormat.logFileName)
                } catch {
                    return "\(error)"
                }
                guard let named else {
                    return "\(logPath) is gone: it was deleted or renamed while the daemon writes to it"
                }
                if !named.isSameFile(as: open) {
                    return "\(logPath) is not the file the daemon writes to: it was replaced"
                }
                if open.size != chain.committedBytes {
                    return "\(logPath) holds \(open.size) bytes but the daemon wrote \(chain.committedBytes): it was truncated or appended to by something else"
                }
                guard chain.nextSeq > 1 else { return nil }
                guard let tail = Self.lastLine(chain.file, size: chain.committedBytes) else {
                    return "the last record cannot be read"
                }
                if AuditLogFormat.hash(tail) != chain.prev { return "the last record is not the one the daemon wrote: it was edited" }
                return nil
            }
        }
    }

    // MARK: - Opening helpers

    private struct Opened {
        var file: FileDescriptor
        var size: Int
        var mode: mode_t
    }

    private static func openForAppend(_ directory: OpenedDirectory, owner: UInt32) throws(OpenFailure) -> Opened {
        // Read-write: the tail is read back through the same descriptor.
        let opened: (FileDescriptor, FileStatus)
        do {
            opened = try StateFile.open(AuditLogFormat.logFileName, in: directory, flags: O_RDWR | O_APPEND | O_CREAT, owner: owner)
        } catch {
            throw .untrusted(error)
        }
        guard flock(opened.0.raw, LOCK_EX | LOCK_NB) == 0 else {
            throw .inUse(directory.pathOf(AuditLogFormat.logFileName))
        }
        return Opened(file: opened.0, size: opened.1.size, mode: opened.1.permissions)
    }

    private enum TailState {
        case empty
        case continues(seq: UInt64, hash: String, event: String, headSeq: UInt64)
        case damaged(String)
    }

    /// Whether the chain can be continued after the file's last record:
    /// the last record verifies and agrees with `audit.head`. (The whole
    /// chain is `verify-log`'s and the deep audit's job.)
    private static func inspectTail(
        _ file: FileDescriptor, size: Int, directory: OpenedDirectory, owner: UInt32, key: SymmetricKey
    ) -> TailState {
        var head: AuditHead?
        do {
            let (headFile, _) = try StateFile.open(AuditLogFormat.headFileName, in: directory, flags: O_RDONLY, owner: owner)
            guard let bytes = headFile.read(at: 0, count: 4096) else {
                return .damaged("\(directory.pathOf(AuditLogFormat.headFileName)) cannot be read: \(String(cString: strerror(errno)))")
            }
            head = try AuditHead.decode(bytes, key: key)
        } catch let problem as StateFileProblem {
            if problem.code != ENOENT { return .damaged("\(problem)") }
        } catch {
            return .damaged("\(error)")
        }
        guard size > 0 else {
            if let head { return .damaged("the log was missing or empty but audit.head records that it reached seq \(head.seq): it was deleted or truncated") }
            return .empty
        }
        guard let line = lastLine(file, size: size) else {
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
        return .continues(seq: record.seq, hash: hash, event: record.event, headSeq: head.seq)
    }

    /// The last complete line of the first `size` bytes (without its
    /// newline), or nil if the file does not end with a newline or the
    /// line is longer than the limit.
    static func lastLine(_ file: FileDescriptor, size: Int) -> [UInt8]? {
        let window = min(size, AuditLogFormat.maxLineBytes + 2)
        guard let bytes = file.read(at: size - window, count: window), bytes.count == window,
              bytes.last == 0x0A
        else { return nil }
        let body = bytes.dropLast()
        if let newline = body.lastIndex(of: 0x0A) { return Array(body[(newline + 1)...]) }
        // No newline before it: the line starts the file, or is too long.
        return window == size ? Array(body) : nil
    }

    /// Renames the log (and its head) to `*.broken-<ms>`; returns why and
    /// where it went.
    private static func moveAside(_ directory: OpenedDirectory, reason: String) throws(OpenFailure) -> (reason: String, previousLog: String?) {
        let suffix = String(SystemClock.realtimeMilliseconds())
        let aside = AuditLogFormat.brokenPrefix + suffix
        do {
            try directory.rename(AuditLogFormat.logFileName, to: aside)
        } catch {
            throw .io(SystemError("rename (moving a damaged log aside)", directory.pathOf(AuditLogFormat.logFileName), code: error.code))
        }
        if directory.exists(AuditLogFormat.headFileName) {
            try? directory.rename(AuditLogFormat.headFileName, to: "audit.head.broken-" + suffix)
        }
        directory.sync()
        return (reason, directory.pathOf(aside))
    }

    static func timestamp(_ milliseconds: Int64) -> String {
        var writer = JSONWriter(capacity: 32)
        writer.timestamp(millisecondsSinceEpoch: milliseconds)
        return String(decoding: writer.bytes.dropFirst().dropLast(), as: UTF8.self)
    }
}

extension Duration {
    /// Whole nanoseconds (non-negative durations).
    var nanosecondsValue: UInt64 {
        UInt64(max(0, components.seconds)) * 1_000_000_000 + UInt64(max(0, components.attoseconds) / 1_000_000_000)
    }
}

/// `SymmetricKey` is an immutable value that swift-crypto does not mark
/// `Sendable`; it is only ever read.
struct KeyBox: @unchecked Sendable {
    let key: SymmetricKey
    init(_ key: SymmetricKey) { self.key = key }
}
