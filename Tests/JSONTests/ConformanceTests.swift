import Foundation
import Testing
@testable import SecureOpsJSON
@testable import SecureOpsWire

/// The JSONTestSuite parsing corpus (nst/JSONTestSuite), run on raw bytes.
@Suite(.timeLimit(.minutes(2))) struct ConformanceTests {
    @Test func corpusIsPresent() throws {
        let all = try FileManager.default.contentsOfDirectory(atPath: conformanceDirectory.path)
        #expect(all.count > 300, "the JSONTestSuite corpus is missing or incomplete at \(conformanceDirectory.path)")
    }

    @Test func acceptsEveryValidCaseAsJSONValueAndRawJSON() throws {
        let cases = try conformanceCases(prefix: "y_")
        #expect(cases.count == 95)
        for (name, input) in cases {
            let decoder = FastJSONDecoder()
            #expect(throws: Never.self, "\(name)") { _ = try decoder.decode(JSONValue.self, from: input) }
            #expect(throws: Never.self, "\(name)") { _ = try decoder.decode(RawJSON.self, from: input) }
            #expect(throws: Never.self, "\(name)") { _ = try RawJSON(validating: input) }
        }
    }

    @Test func rejectsEveryInvalidCaseWithAnOffset() throws {
        let cases = try conformanceCases(prefix: "n_")
        #expect(cases.count == 188)
        for (name, input) in cases {
            let decoder = FastJSONDecoder()
            do {
                let value = try decoder.decode(JSONValue.self, from: input)
                Issue.record("\(name) was accepted as \(value)")
            } catch let error as JSONDecodingError {
                #expect(error.offset != nil, "\(name): \(error)")
                if let offset = error.offset { #expect(offset >= 0 && offset <= input.count, "\(name): \(error)") }
            }
            #expect(throws: JSONDecodingError.self, "\(name)") { _ = try decoder.decode(RawJSON.self, from: input) }
            #expect(throws: JSONDecodingError.self, "\(name)") { _ = try RawJSON(validating: input) }
        }
    }

    @Test func rejectsHundredThousandOpeningArraysWithoutStackOverflow() throws {
        let input = try Data(contentsOf: conformanceDirectory.appendingPathComponent("n_structure_100000_opening_arrays.json"))
        let error = #expect(throws: JSONDecodingError.self) {
            _ = try FastJSONDecoder().decode(JSONValue.self, from: [UInt8](input))
        }
        #expect(error?.offset == 512)
        #expect(error?.reason == "nesting deeper than 512 levels")
    }

    /// Implementation-defined cases: never a crash or hang; and the outcome
    /// this decoder chose, pinned so it cannot drift.
    @Test func handlesImplementationDefinedCasesDeliberately() throws {
        let cases = try conformanceCases(prefix: "i_")
        #expect(cases.count == 35)
        for (name, input) in cases {
            let accepted = (try? FastJSONDecoder().decode(JSONValue.self, from: input)) != nil
            // Numbers of any size are accepted (their text is kept exactly);
            // 500 nested arrays are within the default depth of 512.
            // Everything about invalid UTF-8, surrogates, BOMs and UTF-16 is
            // rejected: RFC 8259 §8.1 requires UTF-8, and a lone surrogate
            // cannot become a Swift String.
            let shouldAccept = name.hasPrefix("i_number_") || name == "i_structure_500_nested_arrays.json"
            #expect(accepted == shouldAccept, "\(name)")
        }
    }

    @Test func keepsHugeNumbersAsExactText() throws {
        let value = try FastJSONDecoder().decode(JSONValue.self, from: "[123123e100000, -237462374673276894279832749832423479823246327846]")
        #expect(value == .array([.number(JSONNumber(text: "123123e100000")!),
                                 .number(JSONNumber(text: "-237462374673276894279832749832423479823246327846")!)]))
    }
}
