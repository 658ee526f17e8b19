import CZlib
import Foundation
import Kernels

/// A checkpoint file: named Float32 tensors and a JSON header, with a CRC-32 over everything.
///
/// Layout: magic "NASMPICK", format version (UInt32 LE), header length (UInt64 LE), header JSON
/// (metadata plus a table of tensor names, shapes and offsets), the tensors' Float32 LE data, and
/// the CRC-32 of all preceding bytes (UInt32 LE). A truncated or altered file fails the CRC and is
/// refused with a message, never half-loaded.
public struct CheckpointFile {
    public static let magic = Array("NASMPICK".utf8)
    public static let version: UInt32 = 1

    /// Free-form metadata (epoch, step, seed, optimiser step counts, metric history...).
    public var metadata: [String: JSONValue]
    /// Named tensors, in insertion order.
    public private(set) var tensors: [(name: String, tensor: Tensor)] = []

    public init(metadata: [String: JSONValue] = [:]) { self.metadata = metadata }

    public mutating func add(_ name: String, _ t: Tensor) { tensors.append((name, t)) }

    /// The tensor stored under `name`, checked against the expected shape.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let t = tensors.first(where: { $0.name == name })?.tensor else {
            throw RunError("checkpoint has no tensor '\(name)' (was it written by a different architecture?)")
        }
        guard t.shape == shape else {
            throw RunError("checkpoint tensor '\(name)' has shape \(t.shape), the model expects \(shape) (different architecture?)")
        }
        return t
    }

    public func contains(_ name: String) -> Bool { tensors.contains { $0.name == name } }

    private struct Entry: Codable { var name: String; var shape: [Int]; var offset: Int }
    private struct Header: Codable { var metadata: [String: JSONValue]; var tensors: [Entry] }

    public func encoded() throws -> Data {
        var entries: [Entry] = []
        var offset = 0
        for (name, t) in tensors {
            entries.append(Entry(name: name, shape: t.shape, offset: offset))
            offset += t.count
        }
        let header = try JSONEncoder().encode(Header(metadata: metadata, tensors: entries))
        var out = Data(Self.magic)
        withUnsafeBytes(of: Self.version.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(header)
        for (_, t) in tensors {
            t.scalars.withUnsafeBytes { out.append(contentsOf: $0) }  // x86-64 and arm64 are little-endian
        }
        let crc = out.withUnsafeBytes { UInt32(crc32(0, $0.bindMemory(to: UInt8.self).baseAddress, uInt($0.count))) }
        withUnsafeBytes(of: crc.littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    public init(data: Data, path: String) throws {
        let bytes = [UInt8](data)
        let fixed = Self.magic.count + 4 + 8
        guard bytes.count >= fixed + 4, Array(bytes[0..<Self.magic.count]) == Self.magic else {
            throw RunError("\(path) is not a nas-mpi checkpoint (bad magic or too short)")
        }
        let body = bytes.count - 4
        let stored = bytes[body...].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        let crc = bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt(body))) }
        guard crc == stored else { throw RunError("\(path) is corrupt or truncated (checksum mismatch)") }
        func le<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            var v: T = 0
            for i in 0..<MemoryLayout<T>.size { v |= T(bytes[at + i]) << (8 * i) }
            return v
        }
        let version = le(Self.magic.count, UInt32.self)
        guard version == Self.version else { throw RunError("\(path): checkpoint format version \(version), this build reads \(Self.version)") }
        let headerLength = Int(le(Self.magic.count + 4, UInt64.self))
        guard fixed + headerLength <= body else { throw RunError("\(path): header runs past the end of the file") }
        let header = try JSONDecoder().decode(Header.self, from: Data(bytes[fixed..<(fixed + headerLength)]))
        metadata = header.metadata
        let dataStart = fixed + headerLength
        for e in header.tensors {
            let n = e.shape.reduce(1, *)
            let start = dataStart + e.offset * 4
            guard e.offset >= 0, start + n * 4 <= body else { throw RunError("\(path): tensor '\(e.name)' runs past the end of the file") }
            var scalars = [Float](repeating: 0, count: n)
            scalars.withUnsafeMutableBytes { dst in
                bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[start..<(start + n * 4)])) }
            }
            tensors.append((e.name, try Tensor(shape: e.shape, scalars: scalars)))
        }
    }

    /// Writes atomically (temporary file, fsync, rename).
    public func write(to url: URL) throws { try AtomicFile.write(try encoded(), to: url) }

    public static func read(from url: URL) throws -> CheckpointFile {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw RunError("no checkpoint at \(url.path)") }
        return try CheckpointFile(data: data, path: url.path)
    }
}

/// A JSON value for checkpoint metadata and metrics records.
public enum JSONValue: Codable, Equatable, Sendable {
    case number(Double)
    case string(String)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case null

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        case .null: try c.encodeNil()
        }
    }

    public var double: Double? { if case .number(let d) = self { return d } else { return nil } }
    public var int: Int? { double.map { Int($0) } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
}
