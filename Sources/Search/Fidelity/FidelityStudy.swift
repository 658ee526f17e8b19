import Distributed
import Foundation
import Kernels

/// One architecture of a fidelity study: where it came from, its supernet score and its
/// standalone accuracy per seed.
public struct FidelityEntry: Codable, Equatable, Sendable {
    public var genotype: Genotype
    /// "random" (a uniform sample) or the run directory whose final genotype it is.
    public var source: String
    /// Accuracy of the supernet on this single path, BatchNorm recomputed for it, on the
    /// search's validation half (nil until scored).
    public var supernetAccuracy: Double?
    /// Its supernet accuracy on each kept epoch's supernet, in the order of
    /// `FidelityState.epochScores` (nil: not scored, or the search kept no epochs).
    public var epochAccuracies: [Double?]?
    /// Best validation accuracy of each standalone training, by seed index (nil: not trained yet,
    /// or failed: see `failures`).
    public var accuracies: [Double?]
    public var failures: [String?]

    public init(genotype: Genotype, source: String, seeds: Int) {
        self.genotype = genotype
        self.source = source
        accuracies = Array(repeating: nil, count: seeds)
        failures = Array(repeating: nil, count: seeds)
    }

    /// Every seed trained successfully.
    public var complete: Bool { accuracies.allSatisfy { $0 != nil } }
    /// The mean over the seeds trained so far.
    public var mean: Double? { MeanStd(accuracies.compactMap { $0 })?.mean }
}

/// The study's state on disk (state.json, replaced atomically after every training handed out
/// and every result): the genotypes with their scores, the trainings in flight (trained again,
/// from their checkpoints, on resume) and the cost so far.
public struct FidelityState: FarmState {
    public var entries: [FidelityEntry]
    /// Whether the supernet scores are in (they are computed once, before any training).
    public var scored = false
    /// The kept epochs whose supernets score the genotypes (chosen when the study starts), and
    /// whether each has; nil: none (the search kept none, or --no-per-epoch). Every epoch is
    /// scored once, before any training; a resumed study scores only those not done.
    public var epochScores: [EpochScoring]?
    public var supernetEpoch: Int?
    public var scoreImages = 0
    /// Trainings are numbered seed-major: task id = seed index x genotypes + genotype index.
    public var nextTask = 0
    public var inFlight: [CandidateTask] = []
    public var done = 0
    public var failed = 0
    public var wallSeconds = 0.0
    public var cpuSeconds = 0.0
    /// CPU seconds of the standalone trainings (their groups' ranks).
    public var candidateCPUSeconds = 0.0

    public init(entries: [FidelityEntry], epochs: [Int] = []) {
        self.entries = entries
        epochScores = epochs.isEmpty ? nil : epochs.map { EpochScoring(epoch: $0, scored: false) }
    }

    /// The kept epochs not scored yet.
    public var epochsToScore: [Int] { (epochScores ?? []).filter { !$0.scored }.map(\.epoch) }
}

/// One kept epoch of a fidelity study: its epoch and whether its supernet has scored the
/// genotypes (the scores are in `FidelityEntry.epochAccuracies`).
public struct EpochScoring: Codable, Equatable {
    public var epoch: Int
    public var scored: Bool
}

/// Rank 0's side of `nas-mpi fidelity`: hands out the standalone trainings (every genotype x
/// every seed) to the task farm, records the accuracies, and checkpoints its state after every
/// change, so `--resume` retrains only the trainings that were in flight (from their own
/// checkpoints) and never a finished one.
public final class FidelityStudy: TaskSource, FarmBookkeeping {
    public let config: FidelityConfig
    public let directory: RunDirectory
    /// The state (state.json), the stop latch, the wall time and the trainings to retrain.
    public let book: FarmBook<FidelityState>
    public var log: (String) -> Void = { _ in }

    public var resultsFile: URL { directory.file("fidelity.jsonl") }
    public var summaryFile: URL { directory.file("fidelity.json") }
    public var totalTasks: Int { state.entries.count * config.seeds }

    /// The saved study (`resume`), or a new one of `entries`, scored also on the supernets of
    /// the kept `epochs`.
    public init(config: FidelityConfig, directory: RunDirectory, resume: Bool, epochs: [Int] = [],
                entries: () throws -> [FidelityEntry]) throws {
        self.config = config
        self.directory = directory
        book = try FarmBook(stateFile: directory.file("state.json"), resume: resume, kind: "fidelity") {
            FidelityState(entries: try entries(), epochs: epochs)
        }
        if book.resumed {
            book.requeueInFlight()
        } else {
            try save()
        }
    }

    /// Sets the supernet scores (in the entries' order).
    public func setScores(_ scores: [Double], epoch: Int?, images: Int) throws {
        for (i, s) in scores.enumerated() { book.state.entries[i].supernetAccuracy = s }
        book.state.scored = true
        book.state.supernetEpoch = epoch
        book.state.scoreImages = images
        try save()
        try writeResults()
    }

    /// Sets the scores of one kept epoch's supernet (in the entries' order).
    public func setEpochScores(_ scores: [Double], epoch: Int) throws {
        guard let k = book.state.epochScores?.firstIndex(where: { $0.epoch == epoch }) else {
            throw RunError("epoch \(epoch) is not one of the study's kept epochs")
        }
        let count = book.state.epochScores!.count
        for (i, s) in scores.enumerated() {
            var row = book.state.entries[i].epochAccuracies ?? Array(repeating: nil, count: count)
            row[k] = s
            book.state.entries[i].epochAccuracies = row
        }
        book.state.epochScores![k].scored = true
        try save()
        try writeResults()
    }

    // MARK: Choosing the genotypes

    /// A key under which two genotypes are one architecture (a node's two edges are an
    /// unordered pair).
    public static func architectureKey(_ g: Genotype) -> String {
        func cell(_ edges: [Genotype.Edge]) -> String {
            stride(from: 0, to: edges.count, by: 2).map { k in
                edges[k..<min(k + 2, edges.count)].map { "\($0.input):\($0.op.name)" }.sorted().joined(separator: "+")
            }.joined(separator: ",")
        }
        return cell(g.normal) + "|" + cell(g.reduce)
    }

    /// The study's genotypes: `finals` (deduplicated, in order), then distinct uniform samples of
    /// `space` from `seed` until there are `total` (or the space has no more).
    public static func entries(finals: [(Genotype, String)], total: Int, space: GenotypeSpace, seed: UInt64, seeds: Int) -> [FidelityEntry] {
        var seen = Set<String>()
        var out: [FidelityEntry] = []
        for (g, source) in finals where seen.insert(architectureKey(g)).inserted {
            out.append(FidelityEntry(genotype: g, source: source, seeds: seeds))
        }
        var generator = RandomGenerator(seed: seed, streamID: RandomStream.architectureSample.rawValue << 56 | 0xF1DE)
        var attempts = 0
        while out.count < total && attempts < 100 * total {
            attempts += 1
            let g = space.sample(using: &generator)
            if seen.insert(architectureKey(g)).inserted { out.append(FidelityEntry(genotype: g, source: "random", seeds: seeds)) }
        }
        return out
    }

    // MARK: TaskSource

    public func nextTask(for group: Int) throws -> CandidateTask? {
        guard book.mayHandOut() else { return nil }
        if let task = book.nextRequeued() { return task }
        guard state.nextTask < totalTasks else { return nil }
        let id = state.nextTask
        let (i, s) = position(of: id)
        let task = CandidateTask(id: id, genotype: state.entries[i].genotype, seed: config.training.seed &+ UInt64(s))
        book.state.nextTask += 1
        try book.handOut(task)
        return task
    }

    public func record(_ outcome: CandidateOutcome, of task: CandidateTask, group: Int) throws {
        // Stopped before it finished: it stays in flight and is trained again on resume.
        guard let result = book.result(of: outcome) else { return }
        book.state.inFlight.removeAll { $0.id == task.id }
        let (i, s) = position(of: task.id)
        if result.status == .ok, let acc = result.validationAccuracy {
            book.state.entries[i].accuracies[s] = acc
            book.state.entries[i].failures[s] = nil
        } else {
            book.state.entries[i].failures[s] = result.reason ?? "failed"
            book.state.failed += 1
        }
        book.state.done += 1
        book.state.candidateCPUSeconds += result.coreSeconds
        try save()
        try writeResults()
        let e = state.entries[i]
        log(String(format: "genotype %d seed %d [%d/%d]: ", i, s, state.done, totalTasks)
            + (result.status == .ok ? String(format: "valid acc %.2f%% (supernet %.2f%%), %.1f s on rank(s) %@", 100 * (result.validationAccuracy ?? 0),
                                             100 * (e.supernetAccuracy ?? 0), result.wallSeconds, result.ranks.map(String.init).joined(separator: ","))
                                   : "failed: \(result.reason ?? "unknown reason")"))
    }

    /// Genotype index and seed index of a task id.
    public func position(of id: Int) -> (genotype: Int, seed: Int) { (id % state.entries.count, id / state.entries.count) }

    /// The directory of a training.
    public static func candidateDirectory(_ dir: RunDirectory, genotype: Int, seed: Int) -> RunDirectory {
        RunDirectory(dir.file("candidates").appendingPathComponent(String(format: "g%03d-s%d", genotype, seed)).path)
    }

    // MARK: Results

    /// The statistics over the complete genotypes (every seed trained).
    public func summary(searchMethod: String, validationImages: Int) -> FidelitySummary {
        let complete = state.entries.filter { $0.complete && $0.supernetAccuracy != nil }
        let x = complete.map { $0.supernetAccuracy! }, y = complete.map { $0.mean! }
        let s = FidelitySummary.statistics(supernet: x, standalone: y)
        let perEpoch = perEpochStatistics()
        let note = perEpoch.map { FidelitySummary.perEpochNote(epochs: $0.count) }
            ?? (config.perEpoch == false ? FidelitySummary.perEpochOff : FidelitySummary.noEpochWeights)
        return FidelitySummary(genotypes: state.entries.count, complete: complete.count, seeds: config.seeds, kendallTau: s.tau,
                               spearmanRho: s.rho, sparseKendallTau: s.sparse, sparseThreshold: RankCorrelation.sparseThreshold,
                               topK: s.overlaps, perEpoch: perEpoch, supernetEpochTauNote: note,
                               searchRun: config.searchRun, searchMethod: searchMethod, supernetEpoch: state.supernetEpoch,
                               scoreImages: state.scoreImages, bnBatches: config.bnBatches, candidateEpochs: config.training.epochs,
                               validationImages: validationImages)
    }

    /// The statistics of each scored kept epoch, over the complete genotypes; nil when the study
    /// scores no kept epochs.
    public func perEpochStatistics() -> [EpochFidelity]? {
        guard let epochs = state.epochScores, !epochs.isEmpty else { return nil }
        let standalone = state.entries.map { $0.complete ? $0.mean : nil }
        let scored = epochs.enumerated().filter { $0.element.scored }.map { k, e in
            (epoch: e.epoch, scores: state.entries.map { $0.epochAccuracies?[safe: k] ?? nil })
        }
        return EpochFidelity.statistics(epochs: scored, standalone: standalone)
    }

    /// fidelity_epochs.csv: the rank agreement of each kept epoch's supernet (nil without any).
    public func epochTable() -> CSVTable? {
        guard let perEpoch = perEpochStatistics() else { return nil }
        var t = CSVTable(header: ["epoch", "complete", "kendall_tau", "spearman_rho", "sparse_kendall_tau"])
        for e in perEpoch {
            t.append(["\(e.epoch)", "\(e.complete)", CSVTable.number(e.kendallTau), CSVTable.number(e.spearmanRho),
                      CSVTable.number(e.sparseKendallTau)])
        }
        return t
    }

    public var epochTableFile: URL { directory.file("fidelity_epochs.csv") }

    /// fidelity.jsonl: one line per genotype, in study order.
    public func lines() -> [JSONValue] {
        state.entries.enumerated().map { i, e in
            var o: [String: JSONValue] = [
                "index": .number(Double(i)), "genotype": .string(e.genotype.pythonDescription), "source": .string(e.source),
                "seeds": .array((0..<config.seeds).map { .number(Double(config.training.seed &+ UInt64($0))) }),
                "standalone_accs": .array(e.accuracies.map { $0.map(JSONValue.number) ?? .null }),
                "complete": .bool(e.complete),
            ]
            if let s = e.supernetAccuracy { o["supernet_acc"] = .number(s) }
            if let epochs = state.epochScores, let accs = e.epochAccuracies {
                o["supernet_acc_by_epoch"] = .array(zip(epochs, accs).compactMap { k, a in
                    a.map { .object(["epoch": .number(Double(k.epoch)), "supernet_acc": .number($0)]) }
                })
            }
            if let m = MeanStd(e.accuracies.compactMap { $0 }) {
                o["mean"] = .number(m.mean)
                if let sd = m.std { o["std"] = .number(sd) }
            }
            if e.failures.contains(where: { $0 != nil }) { o["failures"] = .array(e.failures.map { $0.map(JSONValue.string) ?? .null }) }
            return .object(o)
        }
    }

    public func writeResults() throws { try directory.writeLines(lines(), to: resultsFile) }

    /// Adds this process's CPU time and writes cost.json (the form `RunManifest.readCost` reads).
    public func addCost(cpuSeconds: Double, ranks: Int, threads: Int) throws {
        try book.addCost(cpuSeconds: cpuSeconds, ranks: ranks, threads: threads, directory: directory) {
            ["candidate_cpu_seconds": .number(state.candidateCPUSeconds), "trainings_done": .number(Double(state.done))]
        }
    }
}
