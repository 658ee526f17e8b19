import Foundation
import Kernels

/// The files of one run. Only rank 0 writes; every file but the log is replaced atomically.
///
///     config.json       the resolved configuration
///     metrics.jsonl     one JSON object per finished epoch
///     alphas.jsonl      softmaxed alphas after each epoch
///     genotype.json     the current genotype (JSON), genotype.txt (the reference's Python form)
///     checkpoint.bin    weights, alphas, optimiser states, epoch and step
///     epochs/           epoch-NNN.bin: the checkpoint at the end of epoch NNN (search --keep-epoch-weights)
///     cost.json         wall time, ranks, threads, core-seconds
///     run.json          the manifest every command writes (RunManifest.swift)
///     log.txt           the log, appended (a header per process, a timestamp per line: RunLog.swift)
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
    /// Where `--keep-epoch-weights` keeps the end-of-epoch checkpoints.
    public var epochsFolder: URL { file("epochs") }

    /// The checkpoint kept at the end of epoch `epoch` (1-based, as metrics.jsonl counts).
    public func epochCheckpoint(_ epoch: Int) -> URL {
        epochsFolder.appendingPathComponent(String(format: "epoch-%03d.bin", epoch))
    }

    /// The kept end-of-epoch checkpoints, by epoch (empty when the run kept none).
    public func epochCheckpoints() -> [(epoch: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: epochsFolder.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard name.hasPrefix("epoch-"), name.hasSuffix(".bin"),
                  let e = Int(name.dropFirst("epoch-".count).dropLast(".bin".count)), e >= 1 else { return nil }
            return (e, epochsFolder.appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }.map { (epoch: $0.0, url: $0.1) }
    }

    /// Creates the directory for a new run; refuses one that already holds a run.
    public func create() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: config.path) || fm.fileExists(atPath: checkpoint.path) {
            throw RunError("\(url.path) already holds a run; pass --resume to continue it, or choose another --out")
        }
        try Self.makeDirectories(url, purpose: "run directory")
    }

    /// Removes `.NAME.tmp-PID` files that a killed process left behind (its atomic write never got
    /// to the rename); returns their names. Files of a live process are left alone.
    @discardableResult
    public func removeStaleTemporaries() -> [String] {
        var removed: [String] = []
        for (folder, prefix) in [(url, ""), (epochsFolder, "epochs/")] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            for name in names where name.hasPrefix(".") {
                guard let r = name.range(of: ".tmp-", options: .backwards), let pid = Int32(name[r.upperBound...]) else { continue }
                if pid == getpid() || kill(pid, 0) == 0 { continue }
                if unlink(folder.appendingPathComponent(name).path) == 0 { removed.append(prefix + name) }
            }
        }
        return removed.sorted()
    }

    /// `mkdir -p`, with an error that names the component that failed and why (instead of
    /// Foundation's "NSCocoaErrorDomain error 512").
    public static func makeDirectories(_ url: URL, purpose: String) throws {
        var prefix = ""
        for component in url.standardizedFileURL.pathComponents {
            prefix = prefix.isEmpty ? component : (prefix.hasSuffix("/") ? prefix : prefix + "/") + component
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: prefix, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else {
                    throw RunError("cannot create \(purpose) \(url.path): \(prefix) exists and is not a directory")
                }
                continue
            }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                let reason = String(cString: strerror(errno))
                throw RunError("cannot create \(purpose) \(url.path): cannot make \(prefix): \(reason)"
                               + (errno == EACCES || errno == EROFS ? " (choose an --out where you can write)" : ""))
            }
        }
    }

    /// The configuration a run saved in config.json (`forResume`: the message says there is no run
    /// to resume; a run without a checkpoint yet resumes from its beginning).
    public func savedConfig<T: Decodable>(_ type: T.Type, kind: String, forResume: Bool) throws -> T {
        guard let data = FileManager.default.contents(atPath: config.path) else {
            throw RunError("\(url.path) holds no \(forResume ? "run to resume" : "\(kind) run") (no config.json)")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let e as DecodingError {
            if let other = try? self.kind(), !kind.hasPrefix(other.rawValue) {
                throw RunError("\(url.path) holds a \(other == .search ? "search" : "training") run, not a \(kind) run")
            }
            throw RunError("\(config.path) is not a \(kind) configuration: it \(e.message)")
        }
    }

    /// What kind of run a directory holds.
    public enum Kind: String, Codable, Sendable { case search, train }

    /// The kind of run, told from the fields of its config.json.
    public func kind() throws -> Kind {
        guard let data = FileManager.default.contents(atPath: config.path) else {
            throw RunError("\(url.path) holds no run (no config.json)")
        }
        guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: data) else {
            throw RunError("\(config.path) is not valid JSON")
        }
        if fields["genotypeSource"] != nil { return .train }
        if fields["archLearningRate"] != nil { return .search }
        throw RunError("\(config.path) is neither a search nor a training configuration")
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
