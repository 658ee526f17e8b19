import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

extension CandidateSearchConfig.Strategy: ExpressibleByArgument {}

/// The presets of the full-training searches.
enum CandidatePreset: String, ExpressibleByArgument, CaseIterable {
    /// 20 candidates, population 10, sample 3 (as NAS-Bench-201 runs regularized evolution), each
    /// candidate trained with `train`'s quick preset for 2 epochs.
    case quick
    /// 1000 candidates, population 100, sample 25 (Real et al. 2019), each candidate the DARTS search
    /// network (C=16, 8 layers) trained for 25 epochs with the DARTS evaluation procedure (batch 96,
    /// SGD 0.025 cosine, clip 5) without auxiliary head, drop path or cutout.
    case paper
}

/// The options every full-training search shares (`evolve`, `rl`, `random`).
struct CandidateSearchOptions: ParsableArguments {
    @Option(help: "Preset: quick or paper (default: quick).") var preset: CandidatePreset?
    @Option(help: "Candidates to train in total (the budget; candidates in flight count).") var candidates: Int?
    @Option(help: "Ranks that train one candidate together, data-parallel (the ranks must divide into groups of this size).")
    var ranksPerCandidate: Int?
    @Option(help: "Epochs each candidate is trained for.") var candidateEpochs: Int?
    @OptionGroup var network: NetworkOptions
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Share of the (limited) training images held out to score candidates (default 0.5: the search's two halves).")
    var validationSplit: Double?
    @Option(help: "Global batch size of candidate training.") var batchSize: Int?
    @Option(help: "Learning rate of candidate training (cosine annealed).") var learningRate: Float?
    @Option(help: "Random seed (candidate i trains with seed + i).") var seed: UInt64?
    @Option(help: "Use only N training images, taken per class from a fixed shuffled order.") var trainLimit: Int?
    @Option(help: "Run directory (default runs/STRATEGY-DATE-TIME).") var out: String?
    @Option(name: .customLong("resume"), help: "yes (a bare --resume): continue the run in --out, retraining only the candidates that were in flight; auto: continue it if --out holds a run of this configuration, else start it.")
    var resumeMode: ResumeMode?
    @Option(help: "Stop with a checkpoint before this much time has passed (seconds, or e.g. 90m, 2h); the exit status is then 75.")
    var timeBudget: TimeBudget?
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if resumeMode != nil, out == nil { throw ValidationError("--resume needs --out, the run directory to continue") }
        if resumeMode == .yes, let preset {
            throw ValidationError("--resume continues the saved configuration; --preset \(preset.rawValue) would replace it")
        }
        try dataOptions.validate(with: network)
    }

    /// The preset's configuration for `strategy`.
    static func preset(_ p: CandidatePreset, strategy: CandidateSearchConfig.Strategy) -> CandidateSearchConfig {
        let placeholder = Genotype.dartsV2
        var t = TrainConfig.preset(.quick, genotype: placeholder, source: "candidate")
        t.validationSplit = 0.5
        t.evaluateTest = false
        switch p {
        case .quick:
            t.epochs = 2
            return CandidateSearchConfig(strategy: strategy, candidates: 20, population: 10, sampleSize: 3, ranksPerCandidate: 1,
                                         seed: 0, training: t)
        case .paper:
            t.channels = 16
            t.layers = 8
            t.epochs = 25
            t.batchSize = 96
            t.dropPath = 0
            return CandidateSearchConfig(strategy: strategy, candidates: 1000, population: 100, sampleSize: 25, ranksPerCandidate: 1,
                                         seed: 0, training: t)
        }
    }

    /// The flags applied to `base` (default: the preset).
    func resolved(_ base: CandidateSearchConfig?, strategy: CandidateSearchConfig.Strategy,
                  population: Int?, sampleSize: Int?) throws -> CandidateSearchConfig {
        var c = base ?? Self.preset(preset ?? .quick, strategy: strategy)
        c.strategy = strategy
        if let v = candidates { c.candidates = v }
        if let v = ranksPerCandidate { c.ranksPerCandidate = v }
        if let v = population { c.population = v }
        if let v = sampleSize { c.sampleSize = v }
        if let v = seed { c.seed = v }
        var t = c.training
        t.data = try dataOptions.source(t.data, network: network)
        if let v = network.channels { t.channels = v }
        if let v = network.layers { t.layers = v }
        if let v = candidateEpochs { t.epochs = v }
        if let v = validationSplit { t.validationSplit = v }
        if let v = batchSize { t.batchSize = v }
        if let v = learningRate { t.learningRate = v }
        if let v = trainLimit { t.trainLimit = v }
        c.training = t
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }
}

/// Runs a full-training search: every rank is a worker in a group of --ranks-per-candidate, rank 0
/// also runs the strategy (see `TaskFarm`).
enum CandidateSearchRun {
    static func run(_ options: CandidateSearchOptions, strategy: CandidateSearchConfig.Strategy,
                    population: Int? = nil, sampleSize: Int? = nil) throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) {
            let threads = options.threading.apply()
            let dir = try RunSupport.directory(options.out, kind: strategy.rawValue, comm)
            let (config, resume) = try RunSupport.configuration(options.resumeMode, dir, comm, saved: {
                let saved = try dir.savedConfig(CandidateSearchConfig.self, kind: "\(strategy.rawValue) search", forResume: true)
                guard saved.strategy == strategy else {
                    throw RunError("\(dir.url.path) holds a '\(saved.strategy.rawValue)' search, not '\(strategy.rawValue)': resume it with nas-mpi \(saved.strategy.rawValue)")
                }
                return saved
            }, resolved: { try options.resolved($0, strategy: strategy, population: population, sampleSize: sampleSize) })
            // Before any work: the ranks must divide into groups.
            let farm = try TaskFarm(world: comm, ranksPerTask: config.ranksPerCandidate)
            Interrupt.install()
            let deadline = options.timeBudget.map { Date(timeIntervalSince1970: RunSupport.startTime).addingTimeInterval($0.seconds) }
            let log: (String) -> Void = { line in
                print(line)
                fflush(stdout)
                dir.appendLog(line)
            }
            var source: CandidateSearch?
            if comm.rank == 0 {
                if !resume {
                    try dir.create()
                    try dir.writeJSON(config, to: dir.config)
                }
                let search = try CandidateSearch(config: config, directory: dir, resume: resume)
                search.log = log
                // A signal, or the time budget spent: hand out no more candidates (0 = out of time).
                search.stopRequested = { Interrupt.received ?? (deadline.map { Date() >= $0 } == true ? 0 : nil) }
                source = search
                if resume {
                    search.notes.forEach(log)
                    log("resuming \(dir.url.path): \(search.state.recorded) of \(config.candidates) candidates done, \(search.requeued) in flight when it stopped are trained again")
                } else {
                    let t = config.training
                    log("\(strategy.rawValue): \(config.candidates) candidates, each C=\(t.channels), \(t.layers) layers, \(t.epochs) epoch(s), batch \(t.batchSize), scored on a \(Int(100 * (t.validationSplit ?? 0)))% validation split; \(farm.groupCount) group(s) of \(config.ranksPerCandidate) rank(s) x \(threads) thread(s)")
                    log("run directory: \(dir.url.path)")
                }
            }
            let forcedNaN = ProcessInfo.processInfo.environment["NAS_MPI_FORCE_NAN_CANDIDATE"].flatMap(Int.init)
            let trainings = CandidateTrainer.FarmWork(training: config.training, worldRank: comm.rank, threads: threads,
                                                      deadline: deadline) { task, training in
                if task.id == forcedNaN { training.learningRate = 1e30 }
                return RunDirectory(dir.file("candidates").appendingPathComponent(String(format: "%06d", task.id)).path)
            }
            try farm.run(source, work: trainings.run)
            let end = try trainings.agree(comm: comm, sourceStop: source?.stoppedBy)
            if comm.rank == 0, let search = source {
                try finish(search, dir: dir, ranks: comm.size, threads: threads, cpuSeconds: end.cpuSeconds, stopped: end.stoppedBy, log: log)
            }
            try RunSupport.exitIfStopped(end, comm: comm)
        }
    }

    /// Rank 0 after the farm: the test accuracy of the best candidate (its checkpoint chosen on
    /// validation, tested once), cost.json and run.json.
    static func finish(_ search: CandidateSearch, dir: RunDirectory, ranks: Int, threads: Int, cpuSeconds: Double, stopped: Int32?,
                       log: (String) -> Void) throws {
        let config = search.config
        var testAccuracy: Double?
        if stopped == nil, let best = search.state.best {
            let candidateDir = dir.file("candidates").appendingPathComponent(String(format: "%06d", best.id))
            testAccuracy = try CandidateSearch.testAccuracy(config.training, genotype: best.genotype,
                                                             checkpoint: candidateDir.appendingPathComponent("best.bin"))
            log(String(format: "best candidate %d: valid acc %.2f%%, ", best.id, 100 * best.validationAccuracy)
                + (testAccuracy.map { String(format: "test acc %.2f%% (its checkpoint tested once, after the search)", 100 * $0) }
                   ?? "no test set (pass --test-data)"))
            log("best genotype: \(best.genotype.pythonDescription)")
            try dir.writeJSON(best.genotype, to: dir.genotypeJSON)
            try AtomicFile.write(best.genotype.pythonDescription + "\n", to: dir.genotypeText)
        }
        let wall = search.wallSeconds
        try search.addCost(cpuSeconds: cpuSeconds, ranks: ranks, threads: threads)
        let data = try config.training.loadData()
        var manifest = RunManifest(kind: config.strategy.rawValue, method: config.strategy.rawValue, seed: config.seed, ranks: ranks,
                                   threadsPerRank: threads,
                                   budget: ["candidates": Double(config.candidates), "candidate_epochs": Double(config.training.epochs),
                                            "ranks_per_candidate": Double(config.ranksPerCandidate)],
                                   dataset: .init(config.training.data, splits: [("train", data.train), ("validation", data.validation),
                                                                                  ("test", data.test)]),
                                   status: stopped == nil ? .finished : stopped == 0 ? .outOfTime : .interrupted,
                                   statusDetail: stopped.flatMap { $0 == 0 ? nil : "signal \($0)" })
        manifest.setBest(search.state.best?.genotype, validationAccuracy: search.state.best?.validationAccuracy, testAccuracy: testAccuracy)
        try manifest.write(to: dir)
        if stopped == nil {
            log(String(format: "%d candidates trained (%d failed) in %.0f s on %d rank(s) x %d thread(s): %.3f core-hours held, %.3f CPU core-hours",
                       search.state.recorded, search.state.failed, wall, ranks, threads,
                       wall * Double(ranks * threads) / 3600, search.state.cpuSeconds / 3600))
        } else {
            log("stopped: \(search.state.recorded) of \(config.candidates) candidates done; the \(search.state.inFlight.count) in flight wrote checkpoints and continue with --resume")
        }
    }
}

/// `nas-mpi evolve`: regularized evolution.
struct EvolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evolve",
        abstract: "Regularized evolution: train every candidate in full, on groups of ranks.",
        discussion: """
            Regularized evolution (Real et al. 2019) over the DARTS cell space (4 nodes, 2 distinct inputs each, \
            7 ops): the first --population candidates are random; then each new candidate mutates one decision \
            (an op or an input) of the best of --sample-size members drawn with replacement, and the oldest \
            member leaves. Presets: quick (20 candidates, P=10, S=3, 2 epochs each) and paper (1000 candidates, \
            P=100, S=25, 25 epochs each). Every rank trains candidates; rank 0 also runs the strategy. Fitness \
            is the accuracy on a validation split held out from the training images; the test set scores \
            only the final choice. Run files: candidates.jsonl, strategy.json, candidates/NNNNNN/, run.json.
            """
    )
    @OptionGroup var options: CandidateSearchOptions
    @Option(help: "Population size P (paper 100, quick 10).") var population: Int?
    @Option(help: "Sample size S, drawn with replacement (paper 25, quick 3).") var sampleSize: Int?

    func validate() throws {
        if options.resumeMode != .yes { _ = try options.resolved(nil, strategy: .evolution, population: population, sampleSize: sampleSize) }
    }

    func run() throws { try CandidateSearchRun.run(options, strategy: .evolution, population: population, sampleSize: sampleSize) }
}

/// `nas-mpi random`: random search, every candidate trained in full.
struct RandomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random",
        abstract: "Random search: uniformly random genotypes, each trained in full on groups of ranks.",
        discussion: """
            Options and run files as for `evolve`. With --weight-sharing: random search with weight sharing \
            (Li & Talwalkar 2019), which is `nas-mpi search --method random-ws` and takes the search's flags.
            """
    )
    @OptionGroup var options: CandidateSearchOptions
    @Flag(help: "Random search with weight sharing: one supernet trained on a random architecture per step, candidates scored on it (= search --method random-ws, with the search's flags).")
    var weightSharing = false

    func validate() throws {
        if options.resumeMode != .yes { _ = try options.resolved(nil, strategy: .random, population: nil, sampleSize: nil) }
    }

    func run() throws { try CandidateSearchRun.run(options, strategy: .random) }
}

/// `nas-mpi rl`: an LSTM controller trained by REINFORCE.
struct RLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rl",
        abstract: "Reinforcement learning: an LSTM controller proposes genotypes, trained by REINFORCE on the candidates' validation accuracy.",
        discussion: """
            ENAS micro settings: one LSTM layer of 64 units, tanh constant 1.1 on input logits and 1.1/2.5 on op \
            logits, Adam 3.5e-3, entropy weight 1e-4 added to the reward, baseline decay 0.99. Each result updates \
            the controller as it arrives. Options and run files as for `evolve`. With --weight-sharing: ENAS \
            (Pham et al. 2018), the same controller sampling architectures inside one shared supernet, which is \
            `nas-mpi search --method enas` and takes the search's flags.
            """
    )
    @OptionGroup var options: CandidateSearchOptions
    @Flag(help: "ENAS: the controller samples architectures of one shared supernet (= search --method enas, with the search's flags).")
    var weightSharing = false

    func validate() throws {
        if options.resumeMode != .yes { _ = try options.resolved(nil, strategy: .reinforce, population: nil, sampleSize: nil) }
    }

    func run() throws { try CandidateSearchRun.run(options, strategy: .reinforce) }
}

/// `random --weight-sharing` and `rl --weight-sharing` are the weight-sharing searches
/// `search --method random-ws` and `search --method enas`, with the search's flags.
enum WeightSharingAlias {
    static func rewritten(_ arguments: [String]) -> [String] {
        guard let command = arguments.first, arguments.contains("--weight-sharing") else { return arguments }
        let method: String
        switch command {
        case "random": method = "random-ws"
        case "rl": method = "enas"
        default: return arguments
        }
        return ["search", "--method", method] + arguments.dropFirst().filter { $0 != "--weight-sharing" }
    }
}
