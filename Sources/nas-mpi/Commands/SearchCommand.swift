import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi search`: DARTS architecture search.
struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Run a DARTS architecture search and write its run directory.",
        discussion: """
            Methods: darts (Liu et al. 2019; --order 1 or 2), pc-darts (Xu et al. 2020: 1/K of each edge's \
            channels through its ops, edge-normalisation betas, --warmup-epochs with the architecture frozen), \
            darts-minus (Chu et al. 2021: an auxiliary skip connection on every edge, its weight decaying from 1 \
            to 0) and sdarts (SDARTS-RS, Chen & Hsieh 2020: the weight step sees op weights perturbed by uniform \
            noise, --sdarts-epsilon) and p-darts (P-DARTS, Chen et al. 2019: stages of deeper supernets over \
            fewer ops per edge, --stages 5,11,17 cells and --stage-ops 8,5,3, each stage with its own cosine \
            schedule, --warmup-epochs per stage (default 10), --stage-epochs (default 25; --epochs is the total), \
            dropout on the skip connections --skip-dropout 0,0.4,0.7 and at most --max-skip 2 of them in the \
            final normal cell) and random-ws (random search with weight sharing, Li & Talwalkar 2019: each step \
            trains the shared weights on one uniformly random architecture, run single-path; at the end \
            --ws-samples random architectures are scored by the supernet's accuracy on --ws-batches validation \
            batches after recomputing BatchNorm on --ws-bn-batches training batches for each, the best --ws-top \
            are re-scored on the validation half, and every score goes to ws_scores.jsonl) and enas (ENAS, Pham et al. \
            2018: the same single-path training on the architectures an LSTM controller samples, the controller \
            updated by REINFORCE after every step from the supernet's accuracy of one of its samples on the \
            step's validation batch; the end scores the trained controller's samples the same way). \
            `nas-mpi random --weight-sharing` and `nas-mpi rl --weight-sharing` run these two. \
            Presets: 'pc-darts' is the PC-DARTS paper's CIFAR-10 setting (K=4, batch 256, SGD 0.1 cosine to 0, \
            Adam 6e-4 on alphas and betas, 15 warm-up epochs, 50 epochs). 'paper' is the DARTS paper's procedure (C=16, 8 layers, batch 64, 50 epochs, SGD lr 0.025 \
            cosine to 0.001, momentum 0.9, weight decay 3e-4, Adam 3e-4 on the alphas, clip 5, half of the \
            training set for the architecture). 'quick' is C=8, 5 layers, batch 32, 10 epochs on 3x16x16 \
            synthetic images, with a 10x larger architecture learning rate (3e-3) so the alphas move within \
            a short run. Flags override the preset. Without --dataset the embedded synthetic data is used.
            """
    )

    @Option(help: "Preset: quick, paper or pc-darts (default: quick).") var preset: SearchConfig.Preset?
    @Option(help: "Search method: darts, pc-darts, darts-minus, sdarts, p-darts, random-ws or enas.") var method: SearchMethodKind?
    @Option(help: "PC-DARTS: 1/K of each edge's channels go through its ops (paper: 4).") var partialChannels: Int?
    @Option(help: "Epochs at the start that train the weights only, with the architecture frozen.") var warmupEpochs: Int?
    @Option(help: "β-DARTS beta-decay regularisation: add L * epoch/epochs * mean logsumexp of the alpha rows to the architecture loss (default off).")
    var betaRegularization: Float?
    @Option(help: "Entropy regulariser: subtract W * epoch/epochs * mean entropy of the softmaxed alpha rows from the architecture loss: negative W penalises entropy and sharpens the op weights towards one-hot (the usual choice), positive W flattens them (default off).")
    var entropyWeight: Float?
    @Option(help: "Clip the architecture gradients to this global norm (default: no clipping).") var archGradClip: Float?
    @Option(help: "Clip each edge's alpha gradient to this norm, so no edge dominates (default: no clipping).")
    var archGradClipPerEdge: Float?
    @Flag(help: "Record the dominant eigenvalue of the Hessian of the validation loss w.r.t. the alphas every epoch (power iteration, 20 finite-difference Hessian-vector products on 2 validation batches).")
    var hessianEigenvalue = false
    @Option(help: "Stop the search early by a rule (repeatable or comma-separated): skips=N (the normal cell holds N skip connections), stable=E (the learnable ops' ranking on every edge unchanged for E epochs), eigenvalue (DARTS-ES, needs --hessian-eigenvalue: returns the genotype of 5 epochs before the stop).")
    var earlyStop: [String] = []
    @OptionGroup var network: NetworkOptions
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Epochs.") var epochs: Int?
    @Option(help: "Images per step.") var batchSize: Int?
    @Option(help: "Weight learning rate (cosine annealed).") var learningRate: Float?
    @Option(help: "Final weight learning rate.") var learningRateMin: Float?
    @Option(help: "Weight SGD momentum.") var momentum: Float?
    @Option(help: "Weight decay of the weights.") var weightDecay: Float?
    @Option(help: "Architecture (alpha) Adam learning rate.") var archLearningRate: Float?
    @Option(help: "Architecture weight decay.") var archWeightDecay: Float?
    @Option(help: "Gradient clipping norm for the weights.") var gradClip: Float?
    @Option(help: "Share of the training images used for the weights; the rest train the alphas.") var trainPortion: Double?
    @Option(help: "Architecture gradient: 1 (first order) or 2 (second order, unrolled).") var order: Int?
    @Option(help: "Random seed.") var seed: UInt64?
    @Option(help: "Use only N training images, taken per class from the fixed shuffled order.") var trainLimit: Int?
    @Option(help: "Run directory (default runs/search-DATE-TIME).") var out: String?
    @Option(name: .customLong("resume"), help: "yes (a bare --resume): continue the run in --out from its checkpoint, with its saved configuration; auto: continue it if --out holds a run of this configuration, else start it.")
    var resumeMode: ResumeMode?
    @Option(help: "Stop with a checkpoint before this much time has passed (seconds, or e.g. 90m, 2h, 1h30m); the exit status is then 75.")
    var timeBudget: TimeBudget?
    @Flag(name: .customLong("sync-bn"), help: "Synchronised BatchNorm: batch statistics over all ranks (default: per rank).")
    var syncBatchNorm = false
    @Option(help: "Recompute cell activations in backward to save memory: none, first (full-resolution cells), all, auto (first when activations would exceed 2 GB), or a number N (the first N cells).")
    var recompute: RecomputePolicy?
    @Option(help: "Start from the weights (and alphas) of a safetensors file written by `nas-mpi export` for a search run.")
    var initWeights: String?
    @Option(help: "SDARTS: the perturbation bound eps, rising linearly over the epochs: start:end (default 0.03:0.3) or end.")
    var sdartsEpsilon: PerturbationSchedule?
    @Option(help: "P-DARTS: cells of each stage's supernet, comma-separated (paper: 5,11,17).") var stages: String?
    @Option(help: "P-DARTS: ops per edge entering each stage (the first: the whole search space; paper: 8,5,3).")
    var stageOps: String?
    @Option(help: "P-DARTS: initial dropout rate on the skip connections in each stage, in [0, 1) (paper: 0,0.4,0.7).")
    var skipDropout: String?
    @Option(help: "P-DARTS: at most this many skip connections in the final normal cell (paper: 2).") var maxSkip: Int?
    @Option(help: "P-DARTS: epochs per stage (paper: 25); sets --epochs to this times the stages.") var stageEpochs: Int?
    @Option(help: "random-ws: random architectures scored on the supernet at the end (paper: 1000; quick preset: 100).")
    var wsSamples: Int?
    @Option(help: "random-ws: the best this many by batch accuracy are re-scored on the whole validation half (default 10).")
    var wsTop: Int?
    @Option(help: "random-ws: validation batches of the first scoring, the same for every candidate (default 4).")
    var wsBatches: Int?
    @Option(help: "random-ws: training batches each candidate's BatchNorm statistics are recomputed on (default 4; 0: keep the supernet's).")
    var wsBnBatches: Int?
    @Option(help: "Dropout on the outputs of the named ops of every mixed edge in the weight step: name=p,... with p in [0, 1), all=p for every op (e.g. skip_connect=0.3,max_pool_3x3=0.1). The skip connection is dropped where it is the identity (stride 1); methods darts, sdarts, darts-minus, p-darts (which sets skip_connect itself).")
    var opDropout: String?
    @Option(help: "Supernet BatchNorm: running (running statistics for evaluation, the default) or batch (no running statistics: batch statistics in evaluation too).")
    var bnMode: BatchNormMode?
    @Option(help: "After the search, reset the supernet's BatchNorm statistics, recompute them as the average over N training batches, and validate again (metrics.jsonl, log).")
    var bnReset: Int?
    @Option(help: "Progressive channel growth: C@EPOCH pairs, e.g. 4@0,8@10,16@20 (C=4 from epoch 0, 8 from epoch 10, 16 from epoch 20). The supernet starts narrow and is widened at the start of each listed epoch, keeping its function (new channels start at zero); the alphas and the optimisers' state carry over. The last width is the run's --channels. Methods darts, sdarts, darts-minus.")
    var channelSchedule: String?
    @Flag(help: "Keep the supernet of every epoch: each end-of-epoch checkpoint is also written to epochs/epoch-NNN.bin (the size of checkpoint.bin per epoch), so that `nas-mpi fidelity` reports Kendall tau against the supernet's epoch.")
    var keepEpochWeights = false
    @Option(help: "Compare a checksum of the parameters across ranks every N steps and stop on divergence (0: never).")
    var checkConsistency = 0
    @Option(help: "Progress: auto (a live line on a terminal), live, or lines.") var progress: ProgressStyle = .auto
    @Option(help: "Without a terminal: log a progress line every N steps (default: 10 per epoch).") var logEvery: Int?
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if resumeMode != nil, out == nil { throw ValidationError("--resume needs --out, the run directory to continue") }
        if resumeMode == .yes {
            if let preset { throw ValidationError("--resume continues the saved configuration; --preset \(preset.rawValue) would replace it") }
        }
        if let logEvery, logEvery < 0 { throw ValidationError("--log-every must be at least 0") }
        if checkConsistency < 0 { throw ValidationError("--check-consistency must be at least 0") }
        try dataOptions.validate(with: network)
        if resumeMode != .yes { _ = try resolvedConfig() }
    }

    /// The flags applied to `base` (default: the preset).
    func resolvedConfig(base: SearchConfig? = nil) throws -> SearchConfig {
        var c = base ?? SearchConfig.preset(preset ?? .quick)
        c.data = try dataOptions.source(c.data, network: network)
        if let v = network.channels { c.channels = v }
        if let v = network.layers { c.layers = v }
        if let v = try network.parsedPrimitives() { c.primitives = v }
        if let v = epochs { c.epochs = v }
        if let v = batchSize { c.batchSize = v }
        if let v = learningRate { c.learningRate = v }
        if let v = learningRateMin { c.learningRateMin = v }
        if let v = momentum { c.momentum = v }
        if let v = weightDecay { c.weightDecay = v }
        if let v = archLearningRate { c.archLearningRate = v }
        if let v = archWeightDecay { c.archWeightDecay = v }
        if let v = gradClip { c.gradClip = v }
        if let v = trainPortion { c.trainPortion = v }
        if let v = order { c.order = v }
        if let v = seed { c.seed = v }
        if let v = trainLimit { c.trainLimit = v }
        if syncBatchNorm { c.syncBatchNorm = true }
        if let v = recompute { c.recompute = v }
        if let v = initWeights { c.initWeights = v }
        if let v = sdartsEpsilon { c.sdartsEpsilon = v }
        if let v = method { c.method = v }
        if let v = partialChannels { c.partialChannels = v }
        if let v = warmupEpochs { c.warmupEpochs = v }
        if let v = betaRegularization { c.betaRegularization = v }
        if let v = entropyWeight { c.entropyWeight = v }
        if let v = archGradClip { c.archGradClip = v }
        if let v = archGradClipPerEdge { c.archGradClipPerEdge = v }
        if hessianEigenvalue { c.hessianEigenvalue = true }
        if let v = bnMode { c.bnMode = v }
        if let v = bnReset { c.bnReset = v }
        if keepEpochWeights { c.keepEpochWeights = true }
        try applyPDARTS(to: &c)
        if wsSamples != nil || wsTop != nil || wsBatches != nil || wsBnBatches != nil {
            var w = c.weightSharing ?? .preset(c.preset)
            if let v = wsSamples { w.samples = v }
            if let v = wsTop { w.top = v }
            if let v = wsBatches { w.batches = v }
            if let v = wsBnBatches { w.bnBatches = v }
            c.weightSharing = w
        }
        do {
            if let v = opDropout { c.opDropout = try OpDropoutRates(parsing: v) }
            if !earlyStop.isEmpty { c.earlyStop = try earlyStop.flatMap { try EarlyStopRule.list(parsing: $0) } }
            if let v = channelSchedule {
                let schedule = try ChannelSchedule(parsing: v)
                if let given = network.channels, given != schedule.finalChannels {
                    throw SearchConfigError("--channels \(given) contradicts --channel-schedule \(v), whose last width \(schedule.finalChannels) is the run's --channels; give one of them")
                }
                c.channels = schedule.finalChannels
                c.channelSchedule = schedule
            }
            try c.validate()
        } catch { throw ValidationError("\(error)") }
        return c
    }

    /// The P-DARTS flags; choosing p-darts on a configuration of another method also takes the
    /// paper's per-stage epochs (25) and warm-up (10) unless --epochs / --warmup-epochs say otherwise.
    private func applyPDARTS(to c: inout SearchConfig) throws {
        let given = stages != nil || stageOps != nil || skipDropout != nil || maxSkip != nil || stageEpochs != nil
        guard given || c.method == .pdarts else { return }
        var p = c.pdarts ?? .paper
        if let v = stages { p.stages = try Self.list(v, "--stages") }
        if let v = stageOps { p.stageOps = try Self.list(v, "--stage-ops") }
        if let v = skipDropout { p.skipDropout = try Self.list(v, "--skip-dropout") }
        if let v = maxSkip { p.maxSkipConnections = v }
        if c.pdarts == nil && c.method == .pdarts {
            if epochs == nil { c.epochs = PDARTSSettings.paperStageEpochs * p.stages.count }
            if warmupEpochs == nil { c.warmupEpochs = PDARTSSettings.paperWarmupEpochs }
        }
        if let v = stageEpochs {
            guard v >= 1 else { throw ValidationError("--stage-epochs must be at least 1, got \(v)") }
            if let e = epochs, e != v * p.stages.count {
                throw ValidationError("--epochs \(e) contradicts --stage-epochs \(v) x \(p.stages.count) stages; give one of them")
            }
            c.epochs = v * p.stages.count
        }
        c.pdarts = p
    }

    /// A comma-separated list of numbers.
    private static func list<T: LosslessStringConvertible>(_ text: String, _ flag: String) throws -> [T] {
        let values = text.split(separator: ",", omittingEmptySubsequences: false).map { T(String($0).trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else {
            throw ValidationError("\(flag) takes comma-separated numbers, got '\(text)'")
        }
        return values.map { $0! }
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) { try search(comm) }
    }

    private func search(_ comm: Communicator) throws {
        let threads = threading.apply()
        let dir = try RunSupport.directory(out, kind: "search", comm)
        let (config, resume) = try RunSupport.configuration(resumeMode, dir, comm, saved: { try Searcher.savedConfig(dir) },
                                                            resolved: { try resolvedConfig(base: $0) })
        Interrupt.install()
        let searcher = try Searcher(config: config, directory: dir, resume: resume, communicator: comm, threads: threads)
        searcher.consistencyInterval = checkConsistency
        searcher.deadline = timeBudget.map { Date(timeIntervalSince1970: RunSupport.startTime).addingTimeInterval($0.seconds) }
        RunSupport.attachOutput(log: &searcher.log, progress: &searcher.progress, logEvery: &searcher.logEvery,
                                every: logEvery, stepsPerEpoch: searcher.stepsPerEpoch, style: progress)
        if comm.rank == 0 && !resume {
            searcher.log("search: \(config.method.rawValue)\(Self.methodDetail(config)), \(config.preset.rawValue) preset\(config.warmupEpochs > 0 ? ", \(config.warmupEpochs) warm-up epochs" : ""), \(config.data.kind.rawValue) data (\(searcher.trainSet.count) weight / \(searcher.validationSet.count) architecture images of \(searcher.trainSet.imageShape.map(String.init).joined(separator: "x"))), C=\(config.channels), \(config.layers) layers, batch \(config.batchSize), \(config.epochs) epochs, order \(config.order), seed \(config.seed), \(comm.size) rank(s) x \(threads) thread(s)\(config.syncBatchNorm ? ", synchronised BatchNorm" : "")\(Self.regularisationDetail(config))")
            searcher.log("run directory: \(dir.url.path)")
            RunSupport.logData(DataReport([("train", searcher.trainSet), ("validation", searcher.validationSet)]), log: searcher.log, directory: dir)
        }
        var budget = ["epochs": Double(config.epochs)]
        if let timeBudget { budget["seconds"] = timeBudget.seconds }
        var manifest = RunManifest(kind: "search", method: config.method.rawValue, seed: config.seed, ranks: comm.size, threadsPerRank: threads,
                                   budget: budget, dataset: RunManifest.Dataset(config.data, splits: [("train", searcher.trainSet), ("validation", searcher.validationSet)]),
                                   status: .failed)
        manifest.started = RunManifest.timestamp(Date(timeIntervalSince1970: RunSupport.startTime))
        // The genotype so far (genotype.json) and the supernet's last validation accuracy, into run.json (rank 0).
        func writeManifest(_ status: RunManifest.Status, detail: String? = nil, genotype: Genotype? = nil) throws {
            guard comm.rank == 0 else { return }
            manifest.status = status
            manifest.statusDetail = detail
            manifest.setBest(genotype ?? (try? Genotype.load(dir.genotypeJSON.path)), validationAccuracy: nil, testAccuracy: nil)
            // A single-path supernet's per-epoch val_acc is one path under shared BatchNorm
            // statistics: not the supernet's accuracy. Its candidates' recalibrated scores are.
            if config.method.isSinglePath {
                manifest.bestCandidateValidationAccuracy = SupernetScoring.bestValidationAccuracy(file: dir.file("ws_scores.jsonl"))
            } else {
                manifest.supernetValidationAccuracy = searcher.loop.metrics.last?.object?["val_acc"]?.double
            }
            try manifest.write(to: dir)
        }
        let outcome: Searcher.Outcome
        do { outcome = try searcher.run() } catch {
            try? writeManifest(.failed, detail: "\(error)")
            throw error
        }
        switch outcome {
        case .finished(let genotype):
            try writeManifest(.finished, genotype: genotype)
            if comm.rank == 0 {
                if config.method.isSinglePath {
                    searcher.log("note: the per-epoch \"val (last trained path, shared BatchNorm)\" accuracy above (metrics.jsonl val_acc) runs the last trained path with the supernet's running BatchNorm statistics, which every path trained shares and none fits, so it measures neither the supernet nor any architecture (on real data it sits near chance); each candidate's accuracy after recomputing BatchNorm for its path is in ws_scores.jsonl"
                                 + (manifest.bestCandidateValidationAccuracy.map { String(format: " (best %.2f%%)", 100 * $0) } ?? ""))
                }
                searcher.log("genotype: \(genotype.pythonDescription)")
                searcher.log("written: \(dir.genotypeJSON.path), \(dir.genotypeText.path), \(dir.manifest.path)"
                             + (searcher.earlyStop.map { ", \(dir.file("early_stop.json").path) (genotype of epoch \($0.chosenEpoch))" } ?? ""))
            }
        case .interrupted(let sig):
            try writeManifest(.interrupted, detail: "signal \(sig)")
            throw RunSupport.exitStatus(interruptedBy: sig, comm: comm)
        case .outOfTime:
            try writeManifest(.outOfTime)
            throw RunSupport.exitStatus(interruptedBy: nil, comm: comm)
        }
    }

    /// Op dropout and the BatchNorm strategy for the log's first line.
    static func regularisationDetail(_ c: SearchConfig) -> String {
        (c.opDropout.map { ", op dropout \($0.description)" } ?? "") + (c.bnMode == .batch ? ", BatchNorm without running statistics" : "")
            + (c.bnReset.map { ", BatchNorm reset over \($0) batches at the end" } ?? "")
            + (c.keepEpochWeights == true ? ", every epoch's weights kept in epochs/" : "")
            + (c.channelSchedule.map { ", channel schedule \($0) (C widened at the start of epochs \($0.wideningEpochs.map { String($0 + 1) }.joined(separator: ", ")))" } ?? "")
    }

    /// The method's own settings for the log's first line.
    static func methodDetail(_ c: SearchConfig) -> String {
        switch c.method {
        case .pcDarts: return " (K=\(c.partialChannels))"
        case .dartsMinus: return " (auxiliary skip, beta 1 -> 0)"
        case .sdarts:
            let e = c.sdartsEpsilon ?? .sdartsDefault
            return " (random smoothing, eps \(e.start) -> \(e.end))"
        case .pdarts:
            let p = c.pdarts ?? .paper
            let j = { (v: [Int]) in v.map(String.init).joined(separator: ",") }
            return " (stages \(j(p.stages)) cells, \(j(p.stageOps)) ops per edge, skip dropout \(p.skipDropout.map { String($0) }.joined(separator: ",")), at most \(p.maxSkipConnections) skips)"
        case .randomWS:
            let w = c.weightSharing ?? .preset(c.preset)
            return " (one random architecture per step; \(w.samples) scored at the end, the best \(w.top) re-scored)"
        case .enas:
            let w = c.weightSharing ?? .preset(c.preset)
            return " (an LSTM controller samples each step's architecture and learns by REINFORCE; \(w.samples) of its samples scored at the end, the best \(w.top) re-scored)"
        case .darts: return ""
        }
    }
}

extension PerturbationSchedule: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}
