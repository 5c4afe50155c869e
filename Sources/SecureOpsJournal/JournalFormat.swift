import CSecureOpsSystem

/// The bytes of a journal on disk (docs/DESIGN.md, "The journal").
///
/// A journal is a directory of segment files named by the first sequence
/// they may hold (`00000000000000000001.journal`, twenty digits, so names
/// sort as numbers). A segment is a 32-byte header then records end to end:
///
///     header: "SOJRNL01" | epoch u64 | first sequence u64 | crc32c u32 | 0 u32
///     record: length u32 | crc32c u32 | sequence u64 | timestamp ms i64 | payload
///
/// All integers little-endian. A record's CRC-32C covers its length field,
/// then everything after the CRC field (sequence, timestamp, payload): a
/// torn write, a flipped bit or a length read from garbage all fail it.
enum JournalFormat {
    static let magic: [UInt8] = Array("SOJRNL01".utf8)
    static let segmentHeaderSize = 32
    static let recordHeaderSize = 24
    /// Larger than any frame the engine accepts; a length above it is
    /// garbage, not a record.
    static let maxPayloadBytes = 64 << 20
    static let segmentSuffix = ".journal"

    static func segmentName(firstSequence: UInt64) -> String {
        let digits = String(firstSequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + segmentSuffix
    }

    /// The first sequence a segment name stands for; nil for other names.
    static func firstSequence(ofSegmentNamed name: String) -> UInt64? {
        guard name.hasSuffix(segmentSuffix) else { return nil }
        let digits = name.dropLast(segmentSuffix.count)
        guard digits.count == 20, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return UInt64(digits)
    }

    static func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        cs_crc32c(crc, bytes.baseAddress, bytes.count)
    }

    // MARK: - Segment header

    struct SegmentHeader: Equatable {
        var epoch: UInt64
        var firstSequence: UInt64
    }

    static func encode(_ header: SegmentHeader) -> [UInt8] {
        var bytes = magic
        bytes.appendLittleEndian(header.epoch)
        bytes.appendLittleEndian(header.firstSequence)
        let crc = bytes.withUnsafeBytes { crc32c($0) }
        bytes.appendLittleEndian(crc)
        bytes.appendLittleEndian(UInt32(0))
        assert(bytes.count == segmentHeaderSize)
        return bytes
    }

    static func decodeSegmentHeader(_ bytes: UnsafeRawBufferPointer) -> SegmentHeader? {
        guard bytes.count >= segmentHeaderSize, bytes.prefix(8).elementsEqual(magic) else { return nil }
        let crc = crc32c(UnsafeRawBufferPointer(rebasing: bytes[0..<24]))
        guard bytes.loadLittleEndian(UInt32.self, at: 24) == crc else { return nil }
        return SegmentHeader(epoch: bytes.loadLittleEndian(UInt64.self, at: 8), firstSequence: bytes.loadLittleEndian(UInt64.self, at: 16))
    }

    // MARK: - Records

    /// Writes one record at the start of `buffer` (at least
    /// `recordHeaderSize + payload.count` bytes); returns its size.
    static func writeRecord(
        sequence: UInt64, timestampMilliseconds: Int64, payload: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        precondition(payload.count <= maxPayloadBytes, "a journal record of \(payload.count) bytes")
        let size = recordHeaderSize + payload.count
        precondition(buffer.count >= size, "room for the record")
        buffer.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: UInt64(bitPattern: timestampMilliseconds).littleEndian, toByteOffset: 16, as: UInt64.self)
        if let base = payload.baseAddress { (buffer.baseAddress! + recordHeaderSize).copyMemory(from: base, byteCount: payload.count) }
        let record = UnsafeRawBufferPointer(buffer)
        let length = crc32c(UnsafeRawBufferPointer(rebasing: record[0..<4]))
        let crc = crc32c(UnsafeRawBufferPointer(rebasing: record[8..<size]), continuing: length)
        buffer.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self)
        return size
    }

    /// What the bytes at the start of `bytes` hold.
    enum Decoded {
        /// A whole, intact record of `size` bytes.
        case record(sequence: UInt64, timestampMilliseconds: Int64, payload: Range<Int>, size: Int)
        /// Fewer bytes than the record needs: the end of what was written.
        case truncated
        /// A length or checksum that cannot be right.
        case invalid(String)
    }

    static func decodeRecord(_ bytes: UnsafeRawBufferPointer) -> Decoded {
        guard bytes.count >= recordHeaderSize else { return .truncated }
        let length = Int(bytes.loadLittleEndian(UInt32.self, at: 0))
        guard length <= maxPayloadBytes else { return .invalid("a record length of \(length) bytes") }
        let size = recordHeaderSize + length
        guard bytes.count >= size else { return .truncated }
        let expected = bytes.loadLittleEndian(UInt32.self, at: 4)
        let crc = crc32c(UnsafeRawBufferPointer(rebasing: bytes[8..<size]), continuing: crc32c(UnsafeRawBufferPointer(rebasing: bytes[0..<4])))
        guard crc == expected else { return .invalid("a checksum mismatch") }
        return .record(
            sequence: bytes.loadLittleEndian(UInt64.self, at: 8),
            timestampMilliseconds: Int64(bitPattern: bytes.loadLittleEndian(UInt64.self, at: 16)),
            payload: recordHeaderSize..<size, size: size)
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
