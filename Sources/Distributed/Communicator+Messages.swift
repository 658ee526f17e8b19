import Foundation

/// Typed messages: Codable values sent as JSON bytes, their length learnt by probing, so neither
/// side has to agree on a size beforehand (a task farm's tasks and outcomes, a genotype).
extension Communicator {
    /// Sends a value to one rank as JSON.
    ///
    /// - Parameters:
    ///   - value: what to send.
    ///   - destination: the receiving rank.
    ///   - tag: the tag the receiver asks for (0 or more).
    public func send<T: Encodable>(_ value: T, to destination: Int, tag: Int) throws {
        let bytes = try Self.encode(value)
        try bytes.withUnsafeBytes { try send($0, to: destination, tag: tag) }
    }

    /// Waits for a value sent with `send(_:to:tag:)` and decodes it.
    ///
    /// - Parameters:
    ///   - type: the type the sender encoded.
    ///   - source: the sending rank, or nil for whichever rank's message arrives first.
    ///   - tag: the tag, or nil for any tag.
    /// - Returns: the value and the rank that sent it.
    public func receive<T: Decodable>(_ type: T.Type, from source: Int?, tag: Int?) throws -> (value: T, source: Int) {
        let message = try probe(source: source, tag: tag)
        var bytes = [UInt8](repeating: 0, count: message.byteCount)
        try bytes.withUnsafeMutableBytes { try receive($0, from: message.source, tag: message.tag) }
        return (try Self.decode(type, from: bytes, sender: message.source), message.source)
    }

    /// Copies `root`'s value to every rank of this communicator, as JSON.
    ///
    /// - Parameters:
    ///   - value: the value on `root`; ignored elsewhere (pass nil).
    ///   - root: the rank whose value every rank gets.
    /// - Returns: `root`'s value, on every rank.
    /// - Throws: `CommunicatorError` on `root` when `value` is nil (the other ranks then wait).
    public func broadcast<T: Codable>(value: T?, root: Int = 0) throws -> T {
        var bytes: [UInt8] = []
        if rank == root {
            guard let value else { throw CommunicatorError("broadcast: the root (rank \(root)) has no value to send") }
            bytes = try Self.encode(value)
        }
        try broadcast(bytes: &bytes, root: root)
        if rank == root, let value { return value }
        return try Self.decode(T.self, from: bytes, sender: root)
    }

    private static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let bytes = [UInt8](try encoder.encode(value))
        guard bytes.count <= Int(Int32.max) else {
            throw CommunicatorError("a typed message of \(bytes.count) bytes exceeds one MPI message (2 GiB)")
        }
        return bytes
    }

    private static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], sender: Int) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw CommunicatorError("a message from rank \(sender) is not a \(T.self) (\(bytes.count) bytes): \(error)")
        }
    }
}
