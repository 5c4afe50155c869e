import Glibc
import SecureOpsSystem

/// CLOCK_MONOTONIC in nanoseconds: the one clock every timestamp the tool
/// writes into an alert and every arrival it measures are taken from, so
/// publish-to-delivery latency needs no clock synchronisation.
@inline(__always)
func monotonicNanos() -> UInt64 {
    SystemClock.monotonicNanoseconds()
}

func seconds(_ nanos: UInt64) -> Double { Double(nanos) / 1e9 }

/// This process's user + system CPU time, in seconds (the tool reports its
/// own CPU so a reader can tell whether the tool was the bottleneck).
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Raises the soft descriptor limit to the hard one: 19,000 subscribers in
/// one process need 19,000 descriptors. Returns the limit now in force.
@discardableResult
func raiseDescriptorLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(RLIMIT_NOFILE_BENCH, &limit) == 0 else { return 1024 }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(RLIMIT_NOFILE_BENCH, &limit)
        _ = getrlimit(RLIMIT_NOFILE_BENCH, &limit)
    }
    return Int(limit.rlim_cur)
}

// Glibc imports RLIMIT_NOFILE as an enum case of __rlimit_resource; the
// functions take the raw type.
private let RLIMIT_NOFILE_BENCH = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)

/// What /proc says about another process (the server under test): resident
/// memory and CPU time. Reading /proc needs the same uid (or root).
struct ProcessProbe {
    let pid: Int32

    /// VmRSS in bytes, or nil when /proc cannot be read.
    func residentBytes() -> Int? {
        guard let text = readSmallFile("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.dropFirst(6).filter { $0.isNumber }
            return Int(digits).map { $0 * 1024 }
        }
        return nil
    }

    /// Open descriptors (entries of /proc/PID/fd), or nil when unreadable.
    func openDescriptors() -> Int? {
        guard let directory = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        return count
    }

    /// utime + stime in seconds, or nil.
    func cpuSeconds() -> Double? {
        guard let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) may contain spaces: count fields after
        // its closing parenthesis. utime and stime are fields 14 and 15.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes to standard error without stdio (Swift 6 treats the C `stderr`
/// global as shared mutable state).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { return }
        offset += n
    }
    bytes.removeAll()
}
