import Foundation
import SecureOpsEngine
import Synchronization
import Testing

/// `FastJSONDecodable`: an embedder's own types get the decoder's concrete
/// containers, with the same results and errors as plain `Decodable`.
@Suite("FastJSONDecodable", .timeLimit(.minutes(2)))
struct FastJSONDecodableTests {
    /// Records which initializer ran.
    struct Job: FastJSONDecodable, Equatable {
        var id: Int
        var state: State
        var tags: [String]
        var decodedFast = false

        enum State: String, FastJSONDecodable {
            case queued, running, done

            init(from decoder: any Decoder) throws {
                try self.init(container: decoder.singleValueContainer())
            }

            init(fastJSON decoder: FastJSONValueDecoder) throws {
                try self.init(container: decoder.singleValueContainer())
            }

            private init<C: SingleValueDecodingContainer>(container: C) throws {
                let text = try container.decode(String.self)
                guard let state = State(rawValue: text) else {
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown state \(text)")
                }
                self = state
            }
        }

        enum CodingKeys: String, CodingKey { case id, state, tags }

        init(id: Int, state: State, tags: [String], decodedFast: Bool) {
            self.id = id
            self.state = state
            self.tags = tags
            self.decodedFast = decodedFast
        }

        init(from decoder: any Decoder) throws {
            try self.init(container: decoder.container(keyedBy: CodingKeys.self))
        }

        init(fastJSON decoder: FastJSONValueDecoder) throws {
            try self.init(container: decoder.keyedContainer(keyedBy: CodingKeys.self))
            decodedFast = true
        }

        private init<C: KeyedDecodingContainerProtocol>(container: C) throws where C.Key == CodingKeys {
            id = try container.decode(Int.self, forKey: .id)
            state = try container.decode(State.self, forKey: .state)
            tags = try container.decodeIfPresent([String].self, forKey: .tags) ?? []
        }
    }

    struct Batch: Decodable {
        var jobs: [Job]
    }

    @Test func anEmbeddersTypeIsDecodedThroughItsFastInitializer() throws {
        let job = try FastJSONDecoder().decode(Job.self, from: #"{"id":7,"state":"running","tags":["a","b"],"extra":{"x":[1]}}"#)
        #expect(job == Job(id: 7, state: .running, tags: ["a", "b"], decodedFast: true))
    }

    @Test func nestedInsidePlainDecodableTypesItIsStillTheFastPath() throws {
        let batch = try FastJSONDecoder().decode(Batch.self, from: #"{"jobs":[{"id":1,"state":"queued"},{"id":2,"state":"done"}]}"#)
        #expect(batch.jobs.map(\.id) == [1, 2])
        #expect(batch.jobs.allSatisfy { $0.decodedFast })
    }

    @Test func foundationDecodesTheSameTypeThroughInitFrom() throws {
        let job = try JSONDecoder().decode(Job.self, from: Data(#"{"id":7,"state":"running"}"#.utf8))
        #expect(job == Job(id: 7, state: .running, tags: [], decodedFast: false))
    }

    @Test func errorsCarryTheCodingPathLikeAnyOther() throws {
        let decoder = FastJSONDecoder()
        let wrongState = #expect(throws: JSONDecodingError.self) {
            try decoder.decode(Batch.self, from: #"{"jobs":[{"id":1,"state":"queued"},{"id":2,"state":"lost"}]}"#)
        }
        #expect(wrongState?.description.contains("jobs[1].state") == true, "\(String(describing: wrongState))")
        #expect(wrongState?.description.contains("unknown state lost") == true)
        let notAnObject = #expect(throws: JSONDecodingError.self) { try decoder.decode(Job.self, from: "[1]") }
        #expect(notAnObject?.description.contains("expected a JSON object, found an array") == true, "\(String(describing: notAnObject))")
        // The decoder is reusable after errors.
        #expect(try decoder.decode(Job.self, from: #"{"id":3,"state":"done"}"#).id == 3)
    }

    @Test func theWireProtocolTypesAdoptItToo() throws {
        let request = try FastJSONDecoder().decode(
            IpcRequest.self, from: #"{"type":"publish","alert":{"severity":"high","source":"s","message":"m","details":{"k":1}}}"#)
        guard case .publish(let alert) = request else {
            Issue.record("decoded \(request)")
            return
        }
        #expect(alert.severity == .high && alert.details == RawJSON(.object(["k": .number(JSONNumber(1))])))
        #expect((IpcRequest.self as Any.Type) is any FastJSONDecodable.Type)
        #expect((AlertInput.self as Any.Type) is any FastJSONDecodable.Type)
        #expect((Severity.self as Any.Type) is any FastJSONDecodable.Type)
    }
}
