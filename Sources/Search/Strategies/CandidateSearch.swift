import Distributed
import Foundation
import Kernels

/// Everything that defines a full-training search (`nas-mpi evolve`, `rl`, `random`); written to
/// config.json in the run directory.
///
/// Every candidate is trained from scratch with `training` (its genotype replaced by the
/// candidate's, its seed by `seed + candidate id`), on the training part of the search's split and
/// scored on the held-out validation part; the test set is never seen by the search.
public struct CandidateSearchConfig: Codable, Equatable, Sendable {
    /// How candidates are proposed.
    public enum Strategy: String, Codable, CaseIterable, Sendable {
        /// Regularized evolution (Real et al. 2019).
        case evolution = "evolve"
        /// An LSTM controller trained by REINFORCE (Zoph & Le 2017; ENAS micro settings).
        case reinforce = "rl"
        /// Uniformly random genotypes.
        case random
    }

    public var strategy: Strategy
    /// Candidates to train in total (the budget; candidates in flight count).
    public var candidates: Int
    /// Regularized evolution: population size P and sample size S.
    public var population: Int
    public var sampleSize: Int
    /// Ranks that train one candidate together, data-parallel.
    public var ranksPerCandidate: Int
    public var seed: UInt64
    /// The per-candidate training protocol (the genotype in it is a placeholder).
    public var training: TrainConfig

    public init(strategy: Strategy, candidates: Int, population: Int, sampleSize: Int, ranksPerCandidate: Int, seed: UInt64,
                training: TrainConfig) {
        self.strategy = strategy
        self.candidates = candidates
        self.population = population
        self.sampleSize = sampleSize
        self.ranksPerCandidate = ranksPerCandidate
        self.seed = seed
        self.training = training
    }

    public func validate() throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError(m) }
        guard candidates >= 1 else { throw fail("--candidates must be at least 1, got \(candidates)") }
        guard ranksPerCandidate >= 1 else { throw fail("--ranks-per-candidate must be at least 1, got \(ranksPerCandidate)") }
        if strategy == .evolution {
            guard population >= 2 else { throw fail("--population must be at least 2, got \(population)") }
            guard sampleSize >= 1 && sampleSize <= population else {
                throw fail("--sample-size must lie in 1...\(population) (the population), got \(sampleSize)")
            }
        }
        guard training.validationSplit != nil else {
            throw fail("candidates are scored on a validation split: --validation-split must lie strictly between 0 and 1")
        }
        guard training.batchSize % ranksPerCandidate == 0 else {
            throw fail("--batch-size \(training.batchSize) must be divisible by --ranks-per-candidate \(ranksPerCandidate)")
        }
        try training.validate()
    }
}

/// One candidate handed to a group of workers.
public struct CandidateTask: Codable, Equatable, Sendable {
    public var id: Int
    public var genotype: Genotype
    public var seed: UInt64
    public init(id: Int, genotype: Genotype, seed: UInt64) { self.id = id; self.genotype = genotype; self.seed = seed }
}

/// What a group sends back: the candidate's result, or the signal that stopped it (then the
/// candidate is trained again, from its checkpoint, when the run resumes).
public struct CandidateOutcome: Codable, Sendable {
    public var result: CandidateResult?
    /// SIGINT/SIGTERM/SIGUSR1 number, or 0 when the time budget ran out.
    public var stoppedBy: Int32?
    public init(result: CandidateResult?, stoppedBy: Int32?) { self.result = result; self.stoppedBy = stoppedBy }
}

/// The strategy's state, tagged by kind so one strategy.json holds any of them.
public enum StrategyState: Codable {
    case evolution(RegularizedEvolution)
    case random(RandomSampling)
    case reinforce(Reinforce)

    var strategy: any SearchStrategy {
        switch self {
        case .evolution(let s): return s
        case .random(let s): return s
        case .reinforce(let s): return s
        }
    }

    mutating func propose() throws -> Genotype? {
        switch self {
        case .evolution(var s): defer { self = .evolution(s) }; return try s.propose()
        case .random(var s): defer { self = .random(s) }; return try s.propose()
        case .reinforce(var s): defer { self = .reinforce(s) }; return try s.propose()
        }
    }

    mutating func observe(_ genotype: Genotype, fitness: Double?) throws {
        switch self {
        case .evolution(var s): try s.observe(genotype, fitness: fitness); self = .evolution(s)
        case .random(var s): try s.observe(genotype, fitness: fitness); self = .random(s)
        case .reinforce(var s): try s.observe(genotype, fitness: fitness); self = .reinforce(s)
        }
    }
}

/// The controller's state on disk (strategy.json, replaced atomically after every candidate handed
/// out and every result): the strategy, the candidates in flight (trained again on resume), how
/// many results candidates.jsonl holds, and the best so far.
public struct CandidateSearchState: FarmState {
    public var strategy: StrategyState
    public var nextID: Int = 0
    public var inFlight: [CandidateTask] = []
    public var recorded: Int = 0
    public var failed: Int = 0
    public var best: BestCandidate?
    /// Wall seconds the search has run, over every process of a resumed run (as of the last save).
    public var wallSeconds: Double = 0
    /// CPU seconds of all ranks, summed over the processes that ended cleanly (a process killed
    /// with SIGKILL cannot add its own; each candidate's record keeps its group's CPU time).
    public var cpuSeconds: Double = 0

    public struct BestCandidate: Codable, Equatable {
        public var id: Int
        public var genotype: Genotype
        public var validationAccuracy: Double
    }
}

/// Rank 0's side of a full-training search: proposes candidates from the strategy, records the
/// results in candidates.jsonl, and checkpoints the state after every change, so `--resume`
/// re-issues exactly the candidates that were in flight and never retrains a finished one.
public final class CandidateSearch: TaskSource, FarmBookkeeping {
    public let config: CandidateSearchConfig
    public let directory: RunDirectory
    /// The state (strategy.json), the stop latch, the wall time and the candidates to retrain.
    public let book: FarmBook<CandidateSearchState>
    public var log: (String) -> Void = { _ in }
    /// What the resume found and repaired, for the log.
    public private(set) var notes: [String] = []

    public var candidatesFile: URL { directory.file("candidates.jsonl") }

    /// A new search (`resume` false) or the saved one.
    public init(config: CandidateSearchConfig, directory: RunDirectory, resume: Bool) throws {
        self.config = config
        self.directory = directory
        book = try FarmBook(stateFile: directory.file("strategy.json"), resume: resume, kind: "strategy") {
            CandidateSearchState(strategy: try Self.makeStrategy(config))
        }
        if book.resumed {
            try replayUnsavedResults()
            book.requeueInFlight()
        } else {
            try AtomicFile.write("", to: directory.file("candidates.jsonl"))
            try save()
        }
    }

    static func makeStrategy(_ c: CandidateSearchConfig) throws -> StrategyState {
        let space = GenotypeSpace.darts
        switch c.strategy {
        case .evolution:
            let options = RegularizedEvolution.Options(population: c.population, sampleSize: c.sampleSize, candidates: c.candidates)
            return .evolution(try RegularizedEvolution(space: space, options: options, seed: c.seed))
        case .random:
            return .random(try RandomSampling(space: space, candidates: c.candidates, seed: c.seed))
        case .reinforce:
            return .reinforce(try Reinforce(settings: .init(budget: c.candidates), seed: c.seed))
        }
    }

    // MARK: TaskSource

    public func nextTask(for group: Int) throws -> CandidateTask? {
        guard book.mayHandOut() else { return nil }
        if let task = book.nextRequeued() { return task }
        guard let genotype = try book.state.strategy.propose() else { return nil }
        let task = CandidateTask(id: state.nextID, genotype: genotype, seed: config.seed &+ UInt64(state.nextID))
        book.state.nextID += 1
        try book.handOut(task)
        return task
    }

    public func record(_ outcome: CandidateOutcome, of task: CandidateTask, group: Int) throws {
        // Stopped before it finished: it stays in flight and is trained again on resume.
        guard let result = book.result(of: outcome) else { return }
        let fitness = result.status == .ok ? result.validationAccuracy : nil
        // The line first: a process killed before the state is saved leaves a whole line that the
        // resume replays into the strategy (`replayUnsavedResults`), so the candidate counts as done.
        try appendRecord(task, result, group: group)
        try apply(task, fitness: fitness)
        try save()
        log(Self.describe(task, result, done: state.recorded, of: config.candidates, best: state.best?.validationAccuracy))
    }

    // MARK: Results

    /// The test accuracy of a trained candidate's checkpoint: the test set is loaded here, once,
    /// for the search's final choice; nil when the data has no test split.
    public static func testAccuracy(_ training: TrainConfig, genotype: Genotype, checkpoint: URL) throws -> Double? {
        var c = training
        c.genotype = genotype
        c.evaluateTest = true
        let data = try c.loadData()
        guard let test = data.test else { return nil }
        let net = try EvalNetwork(c.networkConfig(inputShape: data.train.imageShape, classes: data.train.classes), genotype: genotype, seed: c.seed)
        do { try net.state.restore(from: try CheckpointFile.read(from: checkpoint)) } catch {
            throw RunError("the best candidate's checkpoint \(checkpoint.path) cannot be read: \(error)")
        }
        return try evaluate(test, batchSize: c.batchSize, comm: LocalCommunicator()) { b in
            try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }.accuracy
    }

    /// Adds this process's share to the run's CPU total and writes cost.json: wall time, ranks,
    /// threads, cores held (wall x ranks x threads) and CPU time of all ranks (measured, not
    /// estimated: every rank trains candidates), and the CPU time of the candidates themselves.
    public func addCost(cpuSeconds: Double, ranks: Int, threads: Int) throws {
        try book.addCost(cpuSeconds: cpuSeconds, ranks: ranks, threads: threads, directory: directory) {
            let candidateSeconds = (try? String(contentsOf: candidatesFile, encoding: .utf8))?.split(separator: "\n").reduce(0.0) { sum, line in
                sum + ((try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)))?["core_seconds"]?.double ?? 0)
            } ?? 0
            return ["candidate_cpu_seconds": .number(candidateSeconds), "candidates_done": .number(Double(state.recorded))]
        }
    }

    // MARK: Files

    private func appendRecord(_ task: CandidateTask, _ r: CandidateResult, group: Int) throws {
        var fields: [String: JSONValue] = [
            "id": .number(Double(task.id)), "genotype": .string(task.genotype.pythonDescription),
            "status": .string(r.status.rawValue), "epochs": .number(Double(r.epochs)), "wall_seconds": .number(r.wallSeconds),
            "core_seconds": .number(r.coreSeconds), "ranks": .array(r.ranks.map { .number(Double($0)) }),
            "group": .number(Double(group)), "seed": .number(Double(task.seed)),
            "finished_seconds": .number(wallSeconds),
        ]
        if let p = r.parameters { fields["parameters"] = .number(Double(p)) }
        if let m = r.macs { fields["macs"] = .number(Double(m)) }
        if let a = r.validationAccuracy { fields["valid_acc"] = .number(a) }
        if let l = r.validationLoss { fields["valid_loss"] = .number(l) }
        if let reason = r.reason { fields["reason"] = .string(reason) }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let line = String(decoding: try enc.encode(fields), as: UTF8.self) + "\n"
        try Self.append(line, to: candidatesFile)
    }

    /// Appends a line and flushes it to disk (after a crash a line is either whole, and replayed on
    /// resume, or cut off, and dropped: `replayUnsavedResults`).
    static func append(_ line: String, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw RunError("cannot open \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(line.utf8)
        let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress!, $0.count) }
        guard n == bytes.count, fsync(fd) == 0 else { throw RunError("cannot append to \(url.path): \(String(cString: strerror(errno)))") }
    }

    /// The state change of a finished candidate (fitness nil: it failed).
    private func apply(_ task: CandidateTask, fitness: Double?) throws {
        book.state.inFlight.removeAll { $0.id == task.id }
        try book.state.strategy.observe(task.genotype, fitness: fitness)
        if fitness == nil { book.state.failed += 1 }
        if let f = fitness, f > (book.state.best?.validationAccuracy ?? -1) {
            book.state.best = .init(id: task.id, genotype: task.genotype, validationAccuracy: f)
        }
        book.state.recorded += 1
    }

    /// On resume: candidates.jsonl may hold whole lines beyond what strategy.json counts (the
    /// process died between the two writes); each belongs to a candidate still in flight in the
    /// state and is replayed into it, so a finished candidate is never trained again. A cut-off
    /// last line (the process died inside the append) is dropped: that candidate is retrained.
    private func replayUnsavedResults() throws {
        let text = (try? String(contentsOf: candidatesFile, encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if !text.isEmpty && !text.hasSuffix("\n") { lines.removeLast() }
        guard lines.count >= state.recorded else {
            throw RunError("\(candidatesFile.path) holds \(lines.count) candidates but strategy.json counts \(state.recorded); the run directory was changed by hand")
        }
        var kept = Array(lines.prefix(state.recorded))
        for line in lines.dropFirst(state.recorded) {
            guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
                  let id = fields["id"]?.int, let task = state.inFlight.first(where: { $0.id == id }) else { break }
            try apply(task, fitness: fields["status"]?.string == "ok" ? fields["valid_acc"]?.double : nil)
            kept.append(line)
            notes.append("candidate \(id): its result was written before the stop but the state was not; taken from candidates.jsonl")
        }
        if text != kept.map({ $0 + "\n" }).joined() {
            try AtomicFile.write(kept.map { $0 + "\n" }.joined(), to: candidatesFile)
        }
        try save()
    }

    /// The log line of one finished candidate.
    static func describe(_ task: CandidateTask, _ r: CandidateResult, done: Int, of total: Int, best: Double?) -> String {
        let head = "candidate \(task.id) [\(done)/\(total)]"
        guard r.status == .ok, let acc = r.validationAccuracy else { return "\(head) failed: \(r.reason ?? "unknown reason")" }
        return String(format: "%@: valid acc %.2f%%, %.3fM parameters, %.1fM MACs, %.1f s on rank(s) %@; best %.2f%%",
                      head, 100 * acc, Double(r.parameters ?? 0) / 1e6, Double(r.macs ?? 0) / 1e6, r.wallSeconds,
                      r.ranks.map(String.init).joined(separator: ","), 100 * (best ?? 0))
    }
}
