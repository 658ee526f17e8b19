import Foundation
import Kernels

/// `run.json`: one summary per run directory, the same for every command (search, train, the
/// full-training searches evolve, rl, random, and fidelity), so that a comparison report reads every run alike:
/// what ran (kind, method, seed, ranks, budget, data), what it found (the best genotype, its
/// validation and test accuracy), what it cost (core-hours, wall time) and how it ended.
///
/// Rank 0 writes it atomically when a run finishes and when it stops cleanly (a signal, the time
/// budget); a resumed run rewrites it and keeps the first start time. Keys are snake_case; a field
/// not measured is left out (a search has no test accuracy; a train run without a validation split
/// has no validation accuracy).
public struct RunManifest: Codable, Equatable, Sendable {
    /// The version of this file's format (bumped when a field changes meaning or goes away).
    public static let formatVersion = 1

    public enum Status: String, Codable, Sendable {
        case finished
        /// Stopped by a signal, with a checkpoint (`--resume` continues it).
        case interrupted
        /// Stopped by `--time-budget`, with a checkpoint.
        case outOfTime = "out-of-time"
        case failed
    }

    /// The data a run used.
    public struct Dataset: Codable, Equatable, Sendable {
        public var kind: String
        public var path: String?
        public var testPath: String?
        /// [C, H, W].
        public var imageShape: [Int]
        public var classes: Int
        /// Images per part, by name: train, validation, test.
        public var splits: [String: Int]

        enum CodingKeys: String, CodingKey {
            case kind, path, classes, splits
            case testPath = "test_path"
            case imageShape = "image_shape"
        }

        /// - Parameter splits: the run's parts by name (nil parts are left out).
        public init(_ source: DataSource, splits: [(String, ImageDataset?)]) {
            kind = source.kind.rawValue
            path = source.path
            testPath = source.testPath
            let first = splits.compactMap(\.1).first
            imageShape = first?.imageShape ?? source.imageShape ?? []
            classes = first?.classes ?? 0
            self.splits = Dictionary(uniqueKeysWithValues: splits.compactMap { name, d in d.map { (name, $0.count) } })
        }
    }

    public var version: Int
    /// The command: search, train, evolve, rl, random, ...
    public var kind: String
    /// The method within the kind (darts, pc-darts, ... for search; regularized-evolution,
    /// reinforce, ... for the full-training searches; darts-evaluation for train).
    public var method: String
    public var seed: UInt64
    public var ranks: Int
    public var threadsPerRank: Int
    /// What the run was allowed: epochs, candidates, epochs per candidate, seconds...
    public var budget: [String: Double]
    public var dataset: Dataset
    /// The best genotype found (search), or trained (train); nil before there is one.
    public var bestGenotype: Genotype?
    /// The same in the reference's Python form.
    public var bestGenotypePython: String?
    /// Its accuracy on validation images (train: the selected epoch's; full-training search: the
    /// best candidate's fitness); nil when not measured (a weight-sharing search has not trained
    /// the genotype: see `supernetValidationAccuracy`).
    public var validationAccuracy: Double?
    /// Weight-sharing searches: the supernet's validation accuracy at the last epoch (not the
    /// genotype's own). Not set for single-path supernets (random-ws, enas): their per-epoch
    /// validation pass runs one path with BatchNorm statistics shared by every path trained, so
    /// it measures no architecture (see `bestCandidateValidationAccuracy`).
    public var supernetValidationAccuracy: Double?
    /// Single-path supernets (random-ws, enas): the best validation accuracy among the
    /// candidates scored at the end, each after recomputing BatchNorm for its path
    /// (ws_scores.jsonl val_acc).
    public var bestCandidateValidationAccuracy: Double?
    /// Its test accuracy (train: of best.bin); nil when not measured.
    public var testAccuracy: Double?
    /// A fidelity study (`nas-mpi fidelity`): how well the supernet ranked its architectures
    /// against standalone training (the same as its fidelity.json); nil for other kinds.
    public var fidelity: FidelitySummary?
    /// CPU time used by all ranks, in core-hours (cost.json's all-ranks estimate).
    public var coreHours: Double
    /// Cores held (wall x ranks x threads), in core-hours.
    public var coreHoursHeld: Double
    public var wallSeconds: Double
    public var status: Status
    /// Why the run stopped or failed (a signal, an error), when it did not finish.
    public var statusDetail: String?
    /// The command line of the process that wrote the file (`CommandLine.arguments`).
    public var commandLine: [String]
    /// Rank 0's host and its cores.
    public var host: String
    public var cores: Int
    /// The OpenBLAS kernel set rank 0 ran (`BLAS.kernelDescription`); absent in older files.
    public var blas: String?
    /// ISO 8601: when the run first started, and when this file was written.
    public var started: String
    public var finished: String

    enum CodingKeys: String, CodingKey {
        case version, kind, method, seed, ranks, budget, dataset, status, host, cores, blas, started, finished, fidelity
        case threadsPerRank = "threads_per_rank"
        case bestGenotype = "best_genotype"
        case bestGenotypePython = "best_genotype_python"
        case validationAccuracy = "validation_accuracy"
        case testAccuracy = "test_accuracy"
        case supernetValidationAccuracy = "supernet_validation_accuracy"
        case bestCandidateValidationAccuracy = "best_candidate_validation_accuracy"
        case coreHours = "core_hours"
        case coreHoursHeld = "core_hours_held"
        case wallSeconds = "wall_seconds"
        case statusDetail = "status_detail"
        case commandLine = "command_line"
    }

    /// A manifest of this process: command line, host, cores and the time now; the cost is
    /// filled in by `write(to:)` from cost.json.
    public init(kind: String, method: String, seed: UInt64, ranks: Int, threadsPerRank: Int, budget: [String: Double],
                dataset: Dataset, status: Status, statusDetail: String? = nil) {
        version = Self.formatVersion
        self.kind = kind
        self.method = method
        self.seed = seed
        self.ranks = ranks
        self.threadsPerRank = threadsPerRank
        self.budget = budget
        self.dataset = dataset
        self.status = status
        self.statusDetail = statusDetail
        coreHours = 0
        coreHoursHeld = 0
        wallSeconds = 0
        commandLine = CommandLine.arguments
        host = ProcessInfo.processInfo.hostName
        cores = ProcessInfo.processInfo.activeProcessorCount
        blas = BLAS.kernelDescription
        let now = Self.timestamp(Date())
        started = now
        finished = now
    }

    /// Sets the best genotype (both forms).
    public mutating func setBest(_ genotype: Genotype?, validationAccuracy: Double?, testAccuracy: Double?) {
        bestGenotype = genotype
        bestGenotypePython = genotype?.pythonDescription
        self.validationAccuracy = validationAccuracy
        self.testAccuracy = testAccuracy
    }

    /// The cost figures of the directory's cost.json (all zero when there is none yet).
    public mutating func readCost(from directory: RunDirectory) {
        guard let data = FileManager.default.contents(atPath: directory.cost.path),
              let cost = try? JSONDecoder().decode([String: JSONValue].self, from: data) else { return }
        wallSeconds = cost["wall_seconds"]?.double ?? 0
        coreHoursHeld = cost["core_hours"]?.double ?? 0
        coreHours = (cost["cpu_seconds_all_ranks_estimate"]?.double ?? 0) / 3600
    }

    /// Writes run.json atomically (call on rank 0): the cost from cost.json, the start time of an
    /// earlier run.json in the directory (a resumed run), the time now as `finished`.
    public func write(to directory: RunDirectory) throws {
        var m = self
        m.readCost(from: directory)
        if let earlier = try? Self.read(from: directory) { m.started = earlier.started }
        m.finished = Self.timestamp(Date())
        try directory.writeJSON(m, to: directory.manifest)
    }

    /// The run.json of a run directory.
    public static func read(from directory: RunDirectory) throws -> RunManifest {
        guard let data = FileManager.default.contents(atPath: directory.manifest.path) else {
            throw RunError("\(directory.url.path) holds no run.json")
        }
        do { return try JSONDecoder().decode(RunManifest.self, from: data) } catch let e as DecodingError {
            throw RunError("\(directory.manifest.path) is not a run manifest: it \(e.message)")
        }
    }

    /// ISO 8601 with the local offset, e.g. 2025-01-31T14:05:09+01:00.
    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.timeZone = .current
        return f.string(from: date)
    }
}

extension RunManifest.Status {
    /// The status of a run whose loop ended with `outcome`.
    public init(_ outcome: LoopOutcome) {
        switch outcome {
        case .finished: self = .finished
        case .interrupted: self = .interrupted
        case .outOfTime: self = .outOfTime
        }
    }
}

extension RunDirectory {
    /// run.json, the run's manifest (`RunManifest`).
    public var manifest: URL { file("run.json") }
}
