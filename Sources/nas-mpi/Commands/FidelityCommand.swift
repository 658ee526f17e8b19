import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi fidelity`: does a search's supernet rank architectures the way standalone training does?
struct FidelityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fidelity",
        abstract: "Rank agreement of a trained supernet with standalone training (Kendall tau, Spearman rho, sparse tau, top-k overlap).",
        discussion: """
            Takes the supernet of a search run (--run, its checkpoint.bin) and --samples genotypes: the final \
            genotype of the search and of every --genotypes-from run, then distinct uniform samples of the \
            search's space (--seed). Each is scored on the supernet single-path (only its ops, unweighted) with \
            BatchNorm recomputed for that path on --bn-batches training batches, on the search's validation half \
            (or --score-batches fixed batches of it); and trained from scratch --seeds times with one short \
            protocol (the candidate presets of evolve/rl/random, --candidate-epochs) on the search's training half, \
            its fitness the best validation accuracy on the search's validation half (the test set is never \
            loaded). The trainings run on the task farm, in groups of --ranks-per-candidate ranks. Reports \
            Kendall tau-b, Spearman rho, sparse Kendall tau (accuracies within 0.1 point tied) and top-k \
            overlap between the supernet accuracy and the mean standalone accuracy. Tau against the supernet's \
            epoch: when the search kept every epoch's supernet (`nas-mpi search --keep-epoch-weights`, files \
            epochs/epoch-NNN.bin), the same genotypes are also scored on each kept epoch's supernet, the same way \
            (single path, BatchNorm recomputed), and each epoch's scores are ranked against the same standalone \
            accuracies (trained once, not per epoch): the per_epoch list of fidelity.json and fidelity_epochs.csv \
            (--per-epoch requires the files, --no-per-epoch skips them; by default they are scored when present). \
            Supported supernets: darts, \
            sdarts, darts-minus (without its auxiliary skip), random-ws, enas; pc-darts and p-darts are refused. \
            Run files: fidelity.jsonl, fidelity.json, fidelity_epochs.csv (with kept epochs), state.json (--resume \
            scores only the epochs not scored yet and retrains only the trainings in flight), candidates/gNNN-sS/, \
            cost.json, run.json.
            """
    )

    @Option(name: .customLong("run"), help: "The search run whose supernet is scored.") var runPath: String?
    @Option(name: .customLong("genotypes-from"), parsing: .singleValue, help: "A run whose final genotype joins the study (repeatable).")
    var genotypesFrom: [String] = []
    @Option(help: "Genotypes in total: the runs' final genotypes, then uniform samples (default 30).") var samples: Int?
    @Option(help: "Standalone trainings per genotype, with seeds seed+0, seed+1, ... (default 2, at least 2).") var seeds: Int?
    @Option(help: "Seed of the uniform samples and first seed of the trainings (default 0).") var seed: UInt64?
    @Option(help: "Candidate preset: quick or paper (as for evolve; default quick).") var preset: CandidatePreset?
    @Option(help: "Epochs of each standalone training.") var candidateEpochs: Int?
    @Option(help: "Initial channels of the standalone networks.") var channels: Int?
    @Option(help: "Cells of the standalone networks.") var layers: Int?
    @Option(help: "Global batch size of the standalone trainings.") var batchSize: Int?
    @Option(help: "Learning rate of the standalone trainings (cosine annealed).") var learningRate: Float?
    @Option(help: "Ranks that train one candidate together, data-parallel.") var ranksPerCandidate: Int?
    @Option(help: "Score the supernet on this many fixed validation batches per genotype (default: the whole validation half).")
    var scoreBatches: Int?
    @Option(help: "Training batches the BatchNorm statistics are recomputed on per genotype (default 4; 0: the supernet's own).")
    var bnBatches: Int?
    @Flag(inversion: .prefixedNo, help: "Also score the genotypes on every epoch's supernet the search kept (search --keep-epoch-weights: epochs/epoch-NNN.bin) and report Kendall tau against the supernet's epoch (default: when the search kept them; --per-epoch requires them).")
    var perEpoch: Bool?
    @Option(help: "Run directory (default runs/fidelity-DATE-TIME).") var out: String?
    @Option(name: .customLong("resume"), help: "yes (a bare --resume): continue the study in --out, retraining only the trainings in flight; auto: continue it if --out holds this study, else start it.")
    var resumeMode: ResumeMode?
    @Option(help: "Stop with a checkpoint before this much time has passed (seconds, or e.g. 90m, 2h); the exit status is then 75.")
    var timeBudget: TimeBudget?
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if resumeMode != nil, out == nil { throw ValidationError("--resume needs --out, the study to continue") }
        if resumeMode == .yes, let preset {
            throw ValidationError("--resume continues the saved configuration; --preset \(preset.rawValue) would replace it")
        }
        if resumeMode == .yes, perEpoch != nil {
            throw ValidationError("--resume continues the saved study, whose kept epochs were chosen when it started; leave out --\(perEpoch! ? "" : "no-")per-epoch")
        }
        if resumeMode != .yes { _ = try resolved(nil) }
    }

    /// Methods whose supernet has no single-path forward, and why.
    static func unsupported(_ method: SearchMethodKind) -> String? {
        switch method {
        case .pcDarts:
            return "pc-darts's edges send 1/K of the channels through the ops and pass the rest by (PartialChannelMixedOp), so one op of a genotype is not a sub-network of its supernet: it has no single-path forward to score a genotype with"
        case .pdarts:
            return "p-darts's last supernet offers each edge only the ops that survived its pruning (and is deeper than its earlier stages), so the uniform samples of the space do not fit it"
        default:
            return nil
        }
    }

    /// The flags applied to `base` (default: the candidate preset on the search's data).
    func resolved(_ base: FidelityConfig?) throws -> FidelityConfig {
        var c: FidelityConfig
        if let base {
            c = base
        } else {
            guard let runPath else { throw ValidationError("--run is required: the search run whose supernet is scored") }
            let dir = RunDirectory(runPath)
            let search = try Self.searchConfig(dir)
            if let why = Self.unsupported(search.method) {
                throw ValidationError("\(runPath) is a \(search.method.rawValue) search: \(why). Fidelity supports darts, sdarts, darts-minus, random-ws and enas supernets.")
            }
            for r in genotypesFrom where !FileManager.default.fileExists(atPath: r) {
                throw ValidationError("--genotypes-from \(r) does not exist")
            }
            let training = FidelityConfig.training(CandidateSearchOptions.preset(preset ?? .quick, strategy: .random).training, for: search)
            c = FidelityConfig(searchRun: dir.url.standardizedFileURL.path,
                               genotypeRuns: genotypesFrom.map { RunDirectory($0).url.standardizedFileURL.path },
                               samples: 30, seeds: 2, seed: 0, ranksPerCandidate: 1, scoreBatches: nil, bnBatches: 4, training: training)
        }
        if let v = samples { c.samples = v }
        if let v = seeds { c.seeds = v }
        if let v = seed { c.seed = v }
        if let v = ranksPerCandidate { c.ranksPerCandidate = v }
        if let v = scoreBatches { c.scoreBatches = v }
        if let v = bnBatches { c.bnBatches = v }
        if let v = perEpoch {
            c.perEpoch = v
            if v, RunDirectory(c.searchRun).epochCheckpoints().isEmpty {
                throw ValidationError("--per-epoch: \(c.searchRun) kept no per-epoch weights (epochs/epoch-NNN.bin); run the search with --keep-epoch-weights")
            }
        }
        var t = c.training
        if let v = seed { t.seed = v }
        if let v = candidateEpochs { t.epochs = v }
        if let v = channels { t.channels = v }
        if let v = layers { t.layers = v }
        if let v = batchSize { t.batchSize = v }
        if let v = learningRate { t.learningRate = v }
        c.training = t
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }

    /// The configuration of a search run, or an error saying what the directory is instead.
    static func searchConfig(_ dir: RunDirectory) throws -> SearchConfig {
        let path = dir.url.path
        guard FileManager.default.fileExists(atPath: dir.config.path) else {
            throw ValidationError("--run \(path) is not a search run: it holds no config.json")
        }
        let kind: RunDirectory.Kind
        do { kind = try dir.kind() } catch { throw ValidationError("--run \(path) is not a search run: \(error)") }
        guard kind == .search else {
            throw ValidationError("--run \(path) is not a search run but a training run: fidelity scores a search's supernet (nas-mpi search)")
        }
        guard FileManager.default.fileExists(atPath: dir.checkpoint.path) else {
            throw ValidationError("--run \(path) has no checkpoint.bin: the search has not finished an epoch, so it has no trained supernet")
        }
        return try Searcher.savedConfig(dir)
    }

    /// The final genotype of a run: run.json's best genotype, else genotype.json.
    static func finalGenotype(_ path: String) throws -> Genotype {
        let dir = RunDirectory(path)
        if let m = try? RunManifest.read(from: dir), let g = m.bestGenotype { return g }
        if FileManager.default.fileExists(atPath: dir.genotypeJSON.path) { return try Genotype.load(dir.genotypeJSON.path) }
        throw RunError("\(path) has no final genotype (neither run.json's best_genotype nor genotype.json)")
    }

    /// What every rank needs from rank 0 before the work: the genotypes, whether the last
    /// weights still have to score them, and the kept epochs whose supernets still have to.
    struct Plan: Codable {
        var genotypes: [Genotype]
        var scored: Bool
        var epochsToScore: [Int]
        var count: Int { genotypes.count }
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) {
            let threads = threading.apply()
            let dir = try RunSupport.directory(out, kind: "fidelity", comm)
            let (config, resume) = try RunSupport.configuration(resumeMode, dir, comm, saved: {
                try dir.savedConfig(FidelityConfig.self, kind: "fidelity", forResume: true)
            }, resolved: { try resolved($0) })
            let farm = try TaskFarm(world: comm, ranksPerTask: config.ranksPerCandidate)
            Interrupt.install()
            let deadline = timeBudget.map { Date(timeIntervalSince1970: RunSupport.startTime).addingTimeInterval($0.seconds) }
            // This rank's stop: a signal, else 0 when the time budget ran out.
            let localStop: () -> Int32? = { Interrupt.received ?? (deadline.map { Date() >= $0 } == true ? 0 : nil) }
            let log: (String) -> Void = { line in
                guard comm.rank == 0 else { return }
                print(line)
                fflush(stdout)
                dir.appendLog(line)
            }
            let searchDir = RunDirectory(config.searchRun)
            let search = try RunSupport.savedConfig(comm) { try Searcher.savedConfig(searchDir) }
            var study: FidelityStudy?
            if comm.rank == 0 {
                if !resume {
                    try dir.create()
                    try dir.writeJSON(config, to: dir.config)
                }
                // The kept epochs are chosen once, when the study starts (state.json keeps them).
                let kept = config.perEpoch == false ? [] : searchDir.epochCheckpoints().map(\.epoch)
                let s = try FidelityStudy(config: config, directory: dir, resume: resume, epochs: kept) {
                    let finals = try ([config.searchRun] + config.genotypeRuns).map { (try Self.finalGenotype($0), $0) }
                    let space = try GenotypeSpace(steps: search.supernetConfig(inputShape: [1, 1, 1], classes: 2).steps,
                                                  ops: search.primitives.filter { $0 != .none })
                    return FidelityStudy.entries(finals: finals, total: config.samples, space: space, seed: config.seed, seeds: config.seeds)
                }
                s.log = log
                s.stopRequested = localStop
                study = s
                if resume {
                    log("resuming \(dir.url.path): \(s.state.done) of \(s.totalTasks) trainings done, \(s.requeued) in flight when it stopped are trained again")
                } else {
                    let t = config.training
                    let finals = s.state.entries.filter { $0.source != "random" }.count
                    log("fidelity: \(s.state.entries.count) genotypes (\(finals) final genotype(s) of runs, \(s.state.entries.count - finals) uniform samples) of the \(search.method.rawValue) supernet \(config.searchRun), each trained \(config.seeds) times: C=\(t.channels), \(t.layers) layers, \(t.epochs) epoch(s), batch \(t.batchSize); \(farm.groupCount) group(s) of \(config.ranksPerCandidate) rank(s) x \(threads) thread(s)")
                    if !kept.isEmpty {
                        log("tau against supernet epoch: the genotypes are also scored on the supernets of the \(kept.count) epoch(s) the search kept (\(searchDir.epochsFolder.path): epochs \(kept.map(String.init).joined(separator: ", ")))")
                    }
                    log("run directory: \(dir.url.path)")
                }
            }
            let plan = try comm.broadcast(value: study.map { Plan(genotypes: $0.state.entries.map(\.genotype), scored: $0.state.scored,
                                                                    epochsToScore: $0.state.epochsToScore) }, root: 0)
            // The supernet scores come first: the last checkpoint's, then each kept epoch's, each
            // saved as soon as it is complete, so a resumed study scores only the rest. Every rank
            // agrees before each genotype whether to stop (a signal, the time budget).
            var scoringStop: FarmStop?
            if !plan.scored || !plan.epochsToScore.isEmpty {
                let scorer = try FidelityScorer(config: config, search: search, searchDirectory: searchDir, directory: dir, comm: comm, log: log)
                let stop: () throws -> FarmStop? = {
                    let end = try FarmStop.agree(localStop(), comm: comm)
                    return end.stoppedBy == nil ? nil : end
                }
                do {
                    if !plan.scored {
                        let (scores, epoch) = try scorer.scores(plan.genotypes, checkpoint: searchDir.checkpoint, stop: stop) {
                            "the weights of epoch \($0.map(String.init) ?? "?") (checkpoint.bin)"
                        }
                        try study?.setScores(scores, epoch: epoch, images: scorer.images)
                    }
                    for e in plan.epochsToScore {
                        let (scores, _) = try scorer.scores(plan.genotypes, checkpoint: searchDir.epochCheckpoint(e), stop: stop) { _ in
                            "the kept weights of epoch \(e) (epochs/\(searchDir.epochCheckpoint(e).lastPathComponent))"
                        }
                        try study?.setEpochScores(scores, epoch: e)
                    }
                } catch let stopped as FidelityScoringStopped {
                    scoringStop = stopped.end
                }
            }

            let trainings = CandidateTrainer.FarmWork(training: config.training, worldRank: comm.rank, threads: threads,
                                                      deadline: deadline) { task, _ in
                FidelityStudy.candidateDirectory(dir, genotype: task.id % plan.count, seed: task.id / plan.count)
            }
            let end: FarmStop
            if let scoringStop {
                end = scoringStop
            } else {
                try farm.run(study, work: trainings.run)
                end = try trainings.agree(comm: comm, sourceStop: study?.stoppedBy)
            }
            if comm.rank == 0, let study {
                try finish(study, search: search, dir: dir, ranks: comm.size, threads: threads, cpuSeconds: end.cpuSeconds,
                           stopped: end.stoppedBy, log: log)
            }
            try RunSupport.exitIfStopped(end, comm: comm)
        }
    }

    /// Rank 0 after the farm: fidelity.json, fidelity.jsonl, cost.json, run.json.
    private func finish(_ study: FidelityStudy, search: SearchConfig, dir: RunDirectory, ranks: Int, threads: Int, cpuSeconds: Double,
                        stopped: Int32?, log: (String) -> Void) throws {
        let config = study.config
        let data = try config.training.loadData()
        let summary = study.summary(searchMethod: search.method.rawValue, validationImages: data.validation?.count ?? 0)
        try study.writeResults()
        try dir.writeJSON(summary, to: study.summaryFile)
        if let table = study.epochTable() { try AtomicFile.write(table.text, to: study.epochTableFile) }
        try study.addCost(cpuSeconds: cpuSeconds, ranks: ranks, threads: threads)
        var manifest = RunManifest(kind: "fidelity", method: search.method.rawValue, seed: config.seed, ranks: ranks, threadsPerRank: threads,
                                   budget: ["samples": Double(config.samples), "seeds": Double(config.seeds),
                                            "candidate_epochs": Double(config.training.epochs),
                                            "ranks_per_candidate": Double(config.ranksPerCandidate),
                                            "bn_batches": Double(config.bnBatches), "score_images": Double(summary.scoreImages)],
                                   dataset: .init(config.training.data, splits: [("train", data.train), ("validation", data.validation)]),
                                   status: stopped == nil ? .finished : stopped == 0 ? .outOfTime : .interrupted,
                                   statusDetail: stopped.flatMap { $0 == 0 ? nil : "signal \($0)" })
        manifest.fidelity = summary
        try manifest.write(to: dir)
        func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "n/a" }
        if stopped == nil {
            log("fidelity over \(summary.complete) of \(summary.genotypes) genotypes (mean of \(config.seeds) seeds): Kendall tau \(f(summary.kendallTau)), Spearman rho \(f(summary.spearmanRho)), sparse Kendall tau \(f(summary.sparseKendallTau)), "
                + summary.topK.map { "top-\($0.k) overlap \($0.common)/\($0.k)" }.joined(separator: ", ")
                + (study.state.failed > 0 ? "; \(study.state.failed) training(s) failed" : ""))
            if let perEpoch = summary.perEpoch {
                log("tau against supernet epoch (\(study.epochTableFile.lastPathComponent)): " + perEpoch.map {
                    "epoch \($0.epoch) tau \(f($0.kendallTau)) rho \(f($0.spearmanRho))"
                }.joined(separator: ", "))
            } else {
                log("tau against supernet epoch: \(summary.supernetEpochTauNote)")
            }
        } else {
            log("stopped: \(study.state.done) of \(study.totalTasks) trainings done; the \(study.state.inFlight.count) in flight wrote checkpoints and continue with --resume")
        }
    }
}
