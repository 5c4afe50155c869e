import Foundation
import SecureOpsSystem
import Testing

/// The Swift examples people copy: every ```` ```swift ```` block of
/// README.md and of the client's DocC catalog type-checks exactly as
/// written, against the modules this test run was built with.
///
/// The rule, for whoever writes a block: a block is a whole `main.swift`.
/// It is type-checked alone (`swiftc -typecheck -swift-version 6`), so it
/// may use top-level code and top-level `await`, must import what it uses,
/// and must declare what it refers to. Nothing is wrapped around it or
/// added to it. Blocks in other languages (```` ```sh ````, ```` ```json ````,
/// plain ```` ``` ````) are not Swift and are not checked.
@Suite("README examples", .timeLimit(.minutes(2)))
struct ReadmeExamplesTests {
    @Test func everySwiftBlockInTheReadmeCompilesAsWritten() async throws {
        let blocks = try SwiftBlocks.in(file: SwiftBlocks.packageRoot + "/README.md")
        #expect(blocks.count >= 3, "README.md has its Swift examples")
        let failures = try await onOwnThread { try SwiftBlocks.typecheck(blocks) }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
    }

    @Test func everySwiftBlockInTheClientDocCCatalogCompilesAsWritten() async throws {
        let catalog = SwiftBlocks.packageRoot + "/Sources/SecureOpsClient/SecureOpsClient.docc"
        let articles = try FileManager.default.contentsOfDirectory(atPath: catalog).filter { $0.hasSuffix(".md") }.sorted()
        let blocks = try articles.flatMap { try SwiftBlocks.in(file: catalog + "/" + $0) }
        #expect(blocks.count >= 2, "the catalog has Swift examples")
        let failures = try await onOwnThread { try SwiftBlocks.typecheck(blocks) }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
    }

    /// The check itself: a block that does not compile is reported with
    /// its file, line and the compiler's words; one that does is not.
    @Test func aBlockThatDoesNotCompileIsReportedWithItsLine() async throws {
        let directory = NSTemporaryDirectory() + "readme-check-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let markdown = directory + "/EXAMPLE.md"
        try """
        # Example

        ```swift
        import SecureOpsClient

        let timeout: RequestTimeout = .seconds(2)
        print(timeout)
        ```

        Some text, then a block that calls what does not exist:

        ```swift
        import SecureOpsClient

        let client = try await SecureOpsAsyncClient.connect()
        try await client.pingg()
        ```

        ```sh
        not swift at all
        ```
        """.write(toFile: markdown, atomically: true, encoding: .utf8)
        let blocks = try SwiftBlocks.in(file: markdown)
        #expect(blocks.map(\.line) == [3, 12])
        let failures = try await onOwnThread { try SwiftBlocks.typecheck(blocks) }
        #expect(failures.count == 1, "\(failures)")
        #expect(failures.first?.hasPrefix("\(markdown):12:") == true, "\(failures)")
        #expect(failures.first?.contains("pingg") == true, "\(failures)")
    }
}

/// Finds ```` ```swift ```` blocks in Markdown and type-checks them.
enum SwiftBlocks {
    struct Block: Sendable {
        let file: String
        /// The line of the opening fence (from 1).
        let line: Int
        let source: String
    }

    /// The package: two levels up from this file (Tests/SecureOpsDaemonTests).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Every Swift block of `file`, in order. A fence may be indented (a
    /// block in a list); the indentation is removed from its lines.
    static func `in`(file: String) throws -> [Block] {
        let lines = try String(contentsOfFile: file, encoding: .utf8).components(separatedBy: "\n")
        var blocks: [Block] = []
        var open: (line: Int, indent: Int, body: [String])?
        for (index, line) in lines.enumerated() {
            let trimmed = line.drop { $0 == " " }
            let indent = line.count - trimmed.count
            if var current = open {
                if trimmed.hasPrefix("```") {
                    blocks.append(Block(file: file, line: current.line, source: current.body.joined(separator: "\n") + "\n"))
                    open = nil
                } else {
                    current.body.append(String(line.dropFirst(min(indent, current.indent))))
                    open = current
                }
            } else if trimmed.hasPrefix("```") {
                let language = trimmed.dropFirst(3).trimmingCharacters(in: .whitespaces)
                // Other fences are skipped to their end.
                open = (index + 1, indent, [])
                if language != "swift" { open = (-1, indent, []) }
            }
        }
        return blocks.filter { $0.line > 0 }
    }

    /// Type-checks every block on its own, all at once; returns one message
    /// per block that does not compile (`file:line: ...` and the compiler's
    /// output, its line numbers made the Markdown file's).
    static func typecheck(_ blocks: [Block]) throws -> [String] {
        let build = DaemonProcess.binaryDirectory
        let modules = build + "/Modules"
        guard FileManager.default.fileExists(atPath: modules) else {
            throw TestFailure("no built modules at \(modules): build the package (swift build --build-tests) first")
        }
        let scratch = NSTemporaryDirectory() + "swift-blocks-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let arguments = ["-typecheck", "-swift-version", "6", "-I", modules] + cModuleMaps(build: build).flatMap { ["-Xcc", "-fmodule-map-file=\($0)"] }

        let results = Locked<[Int: String]>([:])
        let compiler = swiftc()
        DispatchQueue.concurrentPerform(iterations: blocks.count) { index in
            let block = blocks[index]
            let path = scratch + "/block\(index)/main.swift"
            do {
                try FileManager.default.createDirectory(atPath: scratch + "/block\(index)", withIntermediateDirectories: true)
                try block.source.write(toFile: path, atomically: true, encoding: .utf8)
                let (status, output) = try run(compiler, arguments + [path], timeout: 60)
                guard status != 0 else { return }
                let located = relocate(output, from: path, to: block)
                results.withLock { $0[index] = "\(block.file):\(block.line): this block does not compile:\n\(located)" }
            } catch {
                results.withLock { $0[index] = "\(block.file):\(block.line): could not type-check: \(error)" }
            }
        }
        return results.withLock { $0 }.sorted { $0.key < $1.key }.map(\.value)
    }

    /// The module maps of the package's C modules (CSystem, CURing): the
    /// generated ones in the build directory and the hand-written ones in
    /// Sources. Swift modules that import them need them to load.
    private static func cModuleMaps(build: String) -> [String] {
        let files = FileManager.default
        let generated = ((try? files.contentsOfDirectory(atPath: build)) ?? [])
            .filter { $0.hasSuffix(".build") }
            .map { build + "/" + $0 + "/module.modulemap" }
        let sources = packageRoot + "/Sources"
        let written = ((try? files.contentsOfDirectory(atPath: sources)) ?? [])
            .map { sources + "/" + $0 + "/include/module.modulemap" }
        return (generated + written).filter { files.fileExists(atPath: $0) }.sorted()
    }

    /// `path:N:` in the compiler's output becomes `file:(block line + N):`.
    private static func relocate(_ output: String, from path: String, to block: Block) -> String {
        output.components(separatedBy: "\n").map { line in
            guard line.hasPrefix(path + ":") else { return line }
            let rest = line.dropFirst(path.count + 1)
            guard let colon = rest.firstIndex(of: ":"), let number = Int(rest[..<colon]) else { return line }
            return "\(block.file):\(block.line + number)\(rest[colon...])"
        }.joined(separator: "\n")
    }

    private static func swiftc() -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/swiftc") {
            return "\(directory)/swiftc"
        }
        return "/opt/swift/usr/bin/swiftc"
    }
}
