import SecureOpsEngine

/// One request frame of the presence protocol, tagged by `"type"`.
///
/// Adopts `FastJSONDecodable`, so the engine's decoder reads it through
/// concrete containers; the same logic serves `init(from:)`.
enum PresenceRequest: FastJSONDecodable {
    /// Sets `name`'s status (and an optional note); broadcast to watchers.
    case set(name: String, status: PresenceStatus, note: String?)
    /// One person's current status.
    case get(name: String)
    /// Everybody's current status.
    case list
    /// Turns the connection into a watcher of every change (after `since`).
    case watch(since: UInt64?)
    /// Writes everybody's status to the snapshot file (disk: offloaded).
    case save

    enum CodingKeys: String, CodingKey { case type, name, status, note, since }

    init(from decoder: any Decoder) throws {
        try self.init(container: decoder.container(keyedBy: CodingKeys.self))
    }

    init(fastJSON decoder: FastJSONValueDecoder) throws {
        try self.init(container: decoder.keyedContainer(keyedBy: CodingKeys.self))
    }

    private init<C: KeyedDecodingContainerProtocol>(container: C) throws where C.Key == CodingKeys {
        switch try container.decode(String.self, forKey: .type) {
        case "set":
            self = .set(
                name: try container.decode(String.self, forKey: .name),
                status: try container.decode(PresenceStatus.self, forKey: .status),
                note: try container.decodeIfPresent(String.self, forKey: .note))
        case "get": self = .get(name: try container.decode(String.self, forKey: .name))
        case "list": self = .list
        case "watch": self = .watch(since: try container.decodeIfPresent(UInt64.self, forKey: .since))
        case "save": self = .save
        case let other:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container,
                debugDescription: "unknown request type \"\(other.prefix(32))\"; expected set, get, list, watch or save")
        }
    }
}

enum PresenceStatus: String, Decodable, Sendable {
    case online, away, busy, offline
}
