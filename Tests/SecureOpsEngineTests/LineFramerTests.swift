import Testing
@testable import SecureOpsEngine

@Suite("Line framer", .timeLimit(.minutes(2)))
struct LineFramerTests {
    /// Feeds `chunks` and returns the frames produced, as strings.
    func frames(_ chunks: [String], max: Int = 64) -> ([String], LineFramer.Outcome) {
        var framer = LineFramer(maxFrameBytes: max)
        var out: [String] = []
        var outcome = LineFramer.Outcome.consumed
        for chunk in chunks {
            outcome = Array(chunk.utf8).withUnsafeBytes { bytes in
                framer.consume(bytes) { frame in
                    out.append(String(decoding: frame, as: UTF8.self))
                    return .proceed
                }
            }
            if outcome != .consumed { break }
        }
        return (out, outcome)
    }

    @Test func splitsWholeLinesInOneBuffer() {
        #expect(frames(["a\nbb\nccc\n"]).0 == ["a", "bb", "ccc"])
    }

    @Test func joinsALineSplitAcrossReads() {
        #expect(frames(["{\"ty", "pe\":", "\"ping\"}\n"]).0 == [#"{"type":"ping"}"#])
    }

    @Test func deliversALineByteByByte() {
        let text = "hello\nworld\n"
        #expect(frames(text.map { String($0) }).0 == ["hello", "world"])
    }

    @Test func dropsATrailingCarriageReturnAndSkipsEmptyLines() {
        #expect(frames(["\n\r\nx\r\n\n\ny\n"]).0 == ["x", "y"])
    }

    @Test func keepsAnUnfinishedLineUntilItsNewline() {
        var framer = LineFramer(maxFrameBytes: 64)
        var seen: [String] = []
        _ = Array("abc".utf8).withUnsafeBytes { framer.consume($0) { seen.append(String(decoding: $0, as: UTF8.self)); return .proceed } }
        #expect(seen.isEmpty)
        #expect(framer.carry == Array("abc".utf8))
        _ = Array("\n".utf8).withUnsafeBytes { framer.consume($0) { seen.append(String(decoding: $0, as: UTF8.self)); return .proceed } }
        #expect(seen == ["abc"])
        #expect(framer.carry.isEmpty)
    }

    @Test func acceptsAFrameExactlyAtTheLimit() {
        let line = String(repeating: "x", count: 64)
        #expect(frames([line + "\r\n"]).0 == [line])
        #expect(frames([String(line.prefix(30)), String(line.dropFirst(30)) + "\n"]).0 == [line])
    }

    @Test func rejectsALineOverTheLimitInOneBuffer() {
        let result = frames([String(repeating: "x", count: 65) + "\n"])
        #expect(result.0.isEmpty)
        #expect(result.1 == .frameTooLarge)
    }

    @Test func rejectsAnUnterminatedLineOverTheLimitWithoutBufferingIt() {
        var framer = LineFramer(maxFrameBytes: 64)
        var outcome = LineFramer.Outcome.consumed
        for _ in 0..<10 {
            outcome = Array(repeating: UInt8(ascii: "y"), count: 20).withUnsafeBytes { framer.consume($0) { _ in .proceed } }
            if outcome != .consumed { break }
            #expect(framer.carry.count <= 65)
        }
        #expect(outcome == .frameTooLarge)
        #expect(framer.carry.isEmpty)
    }

    @Test func stopsWhenTheHandlerAsks() {
        var framer = LineFramer(maxFrameBytes: 64)
        var seen = 0
        let outcome = Array("a\nb\nc\n".utf8).withUnsafeBytes { framer.consume($0) { _ in seen += 1; return seen < 2 ? .proceed : .stop } }
        #expect(outcome == .stopped)
        #expect(seen == 2)
    }

    @Test func pausesAfterAFrameAndHandsBackTheRestUnread() {
        var framer = LineFramer(maxFrameBytes: 64)
        var seen: [String] = []
        let input = Array("a\nbb\nccc\ndd".utf8)
        let outcome = input.withUnsafeBytes { bytes in
            framer.consume(bytes) { frame in
                seen.append(String(decoding: frame, as: UTF8.self))
                return seen.count == 2 ? .pause : .proceed
            }
        }
        #expect(seen == ["a", "bb"])
        #expect(outcome == .paused(resumeAt: 5))
        #expect(framer.carry.isEmpty)
        // Fed again, the rest frames as if never interrupted.
        let rest = Array(input[5...])
        let after = rest.withUnsafeBytes { bytes in
            framer.consume(bytes) { frame in
                seen.append(String(decoding: frame, as: UTF8.self))
                return .proceed
            }
        }
        #expect(after == .consumed)
        #expect(seen == ["a", "bb", "ccc"])
        #expect(framer.carry == Array("dd".utf8))
    }

    @Test func aPauseOnALineFinishedFromCarryResumesAfterIt() {
        var framer = LineFramer(maxFrameBytes: 64)
        _ = Array("ab".utf8).withUnsafeBytes { framer.consume($0) { _ in .proceed } }
        var seen: [String] = []
        let outcome = Array("c\nd\n".utf8).withUnsafeBytes { bytes in
            framer.consume(bytes) { frame in
                seen.append(String(decoding: frame, as: UTF8.self))
                return .pause
            }
        }
        #expect(seen == ["abc"])
        #expect(outcome == .paused(resumeAt: 2))
    }
}
