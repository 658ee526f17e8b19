import Foundation
import Kernels

/// The files of one run. Only rank 0 writes; every file but the log is replaced atomically.
///
///     config.json       the resolved configuration
///     metrics.jsonl     one JSON object per finished epoch
///     alphas.jsonl      softmaxed alphas after each epoch
///     genotype.json     the current genotype (JSON), genotype.txt (the reference's Python form)
///     checkpoint.bin    weights, alphas, optimiser states, epoch and step
///     cost.json         wall time, ranks, threads, core-seconds
///     log.txt           the log, appended
public struct RunDirectory {
    public let url: URL

    public init(_ path: String) { url = URL(fileURLWithPath: path, isDirectory: true) }

    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    public var config: URL { file("config.json") }
    public var metrics: URL { file("metrics.jsonl") }
    public var alphas: URL { file("alphas.jsonl") }
    public var genotypeJSON: URL { file("genotype.json") }
    public var genotypeText: URL { file("genotype.txt") }
    public var checkpoint: URL { file("checkpoint.bin") }
    public var cost: URL { file("cost.json") }
    public var log: URL { file("log.txt") }

    /// Creates the directory for a new run; refuses one that already holds a run.
    public func create() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: config.path) || fm.fileExists(atPath: checkpoint.path) {
            throw RunError("\(url.path) already holds a run; pass --resume to continue it, or choose another --out")
        }
        do { try fm.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw RunError("cannot create run directory \(url.path): \(error.localizedDescription)")
        }
    }

    /// The configuration a run saved in config.json; with `requireCheckpoint`, also checks that
    /// there is a checkpoint to resume from.
    public func savedConfig<T: Decodable>(_ type: T.Type, kind: String, requireCheckpoint: Bool) throws -> T {
        guard let data = FileManager.default.contents(atPath: config.path) else {
            throw RunError("\(url.path) holds no \(requireCheckpoint ? "run to resume" : "\(kind) run") (no config.json)")
        }
        if requireCheckpoint, !FileManager.default.fileExists(atPath: checkpoint.path) {
            throw RunError("\(url.path) holds no checkpoint to resume from")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw RunError("\(config.path) is not a \(kind) configuration: \(error)")
        }
    }

    /// Appends a line to log.txt.
    public func appendLog(_ line: String) {
        let fd = open(log.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    }

    /// Writes JSON lines atomically.
    public func writeLines(_ values: [JSONValue], to url: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let lines = try values.map { String(decoding: try enc.encode($0), as: UTF8.self) }
        try AtomicFile.write(lines.map { $0 + "\n" }.joined(), to: url)
    }

    /// Writes one Encodable value as pretty JSON, atomically.
    public func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(value) + Data("\n".utf8), to: url)
    }
}
