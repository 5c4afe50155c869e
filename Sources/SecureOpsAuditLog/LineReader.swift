import Glibc
import SecureOpsSystem

/// Reads a file line by line in 64 KiB chunks, so verifying a large log
/// needs memory for one line, not for the file. Knows the file offset
/// after each line, so a verification can stop and later resume there.
struct LineReader {
    enum Item {
        /// A line without its newline.
        case line([UInt8])
        /// Bytes at the end of the file with no newline after them.
        case unterminated([UInt8])
        /// A line longer than the limit (its first bytes are dropped).
        case tooLong
    }

    private let file: FileDescriptor
    private let path: String
    private let limit: Int
    private let maxLineBytes: Int
    /// File offset of `buffer[0]`.
    private var bufferOffset: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    /// Reads `file` from `offset` up to byte `limit`.
    init(file: FileDescriptor, path: String, from offset: Int = 0, limit: Int, maxLineBytes: Int) {
        self.file = file
        self.path = path
        self.limit = limit
        self.maxLineBytes = maxLineBytes
        bufferOffset = offset
    }

    /// The file offset just past the last item returned.
    var offset: Int { bufferOffset + start }

    mutating func next() throws(SystemError) -> Item? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                if line.count > maxLineBytes { return .tooLong }
                return .line(line)
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let rest = Array(buffer[start...])
                start = buffer.count
                return .unterminated(rest)
            }
            if buffer.count - start > maxLineBytes {
                // Skip to the next newline without keeping the line.
                try skipPastNewline()
                return .tooLong
            }
            try fill()
        }
    }

    private mutating func fill() throws(SystemError) {
        if start > 0 {
            buffer.removeSubrange(0..<start)
            bufferOffset += start
            start = 0
        }
        let readFrom = bufferOffset + buffer.count
        let want = min(64 << 10, limit - readFrom)
        guard want > 0 else {
            atEnd = true
            return
        }
        guard let chunk = file.read(at: readFrom, count: want) else { throw SystemError("read", path) }
        if chunk.isEmpty { atEnd = true }
        buffer.append(contentsOf: chunk)
    }

    private mutating func skipPastNewline() throws(SystemError) {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                start = newline + 1
                return
            }
            bufferOffset += buffer.count
            buffer.removeAll(keepingCapacity: true)
            start = 0
            if atEnd { return }
            try fill()
        }
    }
}
