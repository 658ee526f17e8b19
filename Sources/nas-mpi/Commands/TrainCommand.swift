import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi train`: the evaluation phase, training a genotype's network from scratch.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train the network of a genotype from scratch (the DARTS evaluation phase).",
        discussion: """
            Presets: 'paper' is the DARTS evaluation protocol (C=36, 20 layers, batch 96, 600 epochs, SGD 0.025 \
            cosine to 0, momentum 0.9, weight decay 3e-4, clip 5, auxiliary head weight 0.4, drop path 0.2 \
            ramped linearly, cutout 16). 'quick' is C=16, 8 layers, batch 32, 10 epochs, without auxiliary \
            head and cutout. The genotype is a built-in name (DARTS_V1, DARTS_V2), a genotype.json or a \
            file holding the reference's Genotype(...) string. \
            Model selection never looks at the test set. With --validation-split F, F of the (limited) training \
            images are held out as a validation set by the search's fixed split (0.5: exactly the search's two \
            halves), every epoch is validated, best.bin keeps the epoch of the best validation accuracy, and the \
            test split is evaluated once, at the end, on best.bin. Without it, best.bin is the last epoch and the \
            test split is evaluated after every epoch as a record only (choosing the best epoch by test accuracy \
            would leak the test set into the result). checkpoint.bin is always the last state. Data without a test \
            split (CSV) holds out a fixed tenth of --data as the test set (with --validation-split: no test set, \
            give --test-data); a search on the same file has seen those images, so pass an unseen file with \
            --test-data for an honest test accuracy. run.json summarises the run (RunManifest).
            """
    )

    @Option(help: "Genotype: DARTS_V1, DARTS_V2, or a genotype file (JSON or Python form).") var genotype: String?
    @Option(help: "Preset: quick or paper (default: quick).") var preset: TrainConfig.Preset?
    @OptionGroup var network: NetworkOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var testDataOptions: TestDataOptions
    @Option(help: "Epochs.") var epochs: Int?
    @Option(help: "Global batch size.") var batchSize: Int?
    @Option(help: "Learning rate (cosine annealed).") var learningRate: Float?
    @Option(help: "Final learning rate.") var learningRateMin: Float?
    @Option(help: "SGD momentum.") var momentum: Float?
    @Option(help: "Weight decay.") var weightDecay: Float?
    @Option(help: "Gradient clipping norm.") var gradClip: Float?
    @Option(help: "Auxiliary head: true or false.") var auxiliary: Bool?
    @Option(help: "Weight of the auxiliary loss.") var auxiliaryWeight: Float?
    @Option(help: "Final drop-path probability (ramped linearly from 0).") var dropPath: Float?
    @Option(help: "Cutout side in pixels (0: none).") var cutout: Int?
    @Option(help: "Random seed.") var seed: UInt64?
    @Option(help: "Use only N training images, taken per class from a fixed shuffled order.") var trainLimit: Int?
    @Option(help: "Hold out this share (0 < F < 1) of the training images as a validation set, cut as the search cuts them (0.5: its two halves); best.bin is then the best validation accuracy and the test set is evaluated once, at the end.")
    var validationSplit: Double?
    @Flag(name: .customLong("sync-bn"), help: "Synchronised BatchNorm over ranks.") var syncBatchNorm = false
    @Option(help: "Cells that recompute their activations in backward instead of keeping them: none (default), first (before the first reduction), all (least memory, about a third more compute), auto (first when the activations would pass 2 GB), or a number N (the first N cells).")
    var recompute: RecomputePolicy?
    @Option(help: "Run directory (default runs/train-DATE-TIME).") var out: String?
    @Option(name: .customLong("resume"), help: "yes (a bare --resume): continue the run in --out from its checkpoint, with its saved configuration; auto: continue it if --out holds a run of this configuration, else start it.")
    var resumeMode: ResumeMode?
    @Option(help: "Stop with a checkpoint before this much time has passed (seconds, or e.g. 90m, 2h, 1h30m); the exit status is then 75.")
    var timeBudget: TimeBudget?
    @Option(help: "Progress: auto (a live line on a terminal), live, or lines.") var progress: ProgressStyle = .auto
    @Option(help: "Without a terminal: log a progress line every N steps.") var logEvery: Int?
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if resumeMode != nil, out == nil { throw ValidationError("--resume needs --out, the run directory to continue") }
        if resumeMode == .yes {
            if let preset { throw ValidationError("--resume continues the saved configuration; --preset \(preset.rawValue) would replace it") }
            return
        }
        guard genotype != nil else { throw ValidationError("--genotype is required: DARTS_V2, or a genotype file written by nas-mpi search") }
        try dataOptions.validate(with: network)
        _ = try resolvedConfig()
    }

    /// The flags applied to `base` (default: the preset with the genotype).
    func resolvedConfig(base: TrainConfig? = nil) throws -> TrainConfig {
        var c: TrainConfig
        if let base {
            c = base
            if let genotype { c.genotype = try RunSupport.genotype(genotype); c.genotypeSource = Self.source(genotype) }
        } else {
            let name = genotype ?? "DARTS_V2"
            c = TrainConfig.preset(preset ?? .quick, genotype: try RunSupport.genotype(name), source: Self.source(name))
        }
        c.data = try testDataOptions.apply(to: try dataOptions.source(c.data, network: network))
        if let v = network.channels { c.channels = v }
        if let v = network.layers { c.layers = v }
        if let v = epochs { c.epochs = v }
        if let v = batchSize { c.batchSize = v }
        if let v = learningRate { c.learningRate = v }
        if let v = learningRateMin { c.learningRateMin = v }
        if let v = momentum { c.momentum = v }
        if let v = weightDecay { c.weightDecay = v }
        if let v = gradClip { c.gradClip = v }
        if let v = auxiliary { c.auxiliary = v }
        if let v = auxiliaryWeight { c.auxiliaryWeight = v }
        if let v = dropPath { c.dropPath = v }
        if let v = cutout { c.cutout = v }
        if let v = seed { c.seed = v }
        if let v = trainLimit { c.trainLimit = v }
        if let v = validationSplit { c.validationSplit = v }
        if syncBatchNorm { c.syncBatchNorm = true }
        if let v = recompute { c.recompute = v }
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) {
            let threads = threading.apply()
            let dir = try RunSupport.directory(out, kind: "train", comm)
            let (config, resume) = try RunSupport.configuration(resumeMode, dir, comm, saved: { try Trainer.savedConfig(dir, forResume: true) },
                                                                resolved: { try resolvedConfig(base: $0) })
            Interrupt.install()
            let trainer = try Trainer(config: config, directory: dir, resume: resume, communicator: comm, threads: threads)
            trainer.deadline = timeBudget.map { Date(timeIntervalSince1970: RunSupport.startTime).addingTimeInterval($0.seconds) }
            RunSupport.attachOutput(log: &trainer.log, progress: &trainer.progress, logEvery: &trainer.logEvery,
                                    every: logEvery, stepsPerEpoch: trainer.stepsPerEpoch, style: progress)
            let parts = [("train", trainer.trainSet), ("validation", trainer.validationSet), ("test", trainer.testSet)]
            if comm.rank == 0 && !resume {
                let n = trainer.network
                let images = parts.compactMap { name, d in d.map { "\($0.count) \(name)" } }.joined(separator: " / ")
                trainer.log("train: \(config.genotypeSource), \(config.preset.rawValue) preset, C=\(config.channels), \(config.layers) layers, \(n.parameterCountWithoutAuxiliary) parameters\(config.auxiliary ? " (+\(n.state.parameterCount - n.parameterCountWithoutAuxiliary) in the auxiliary head)" : ""), \(n.multiplyAccumulates) MACs per image, \(config.data.kind.rawValue) data (\(images) images), batch \(config.batchSize), \(config.epochs) epochs, \(comm.size) rank(s) x \(threads) thread(s)")
                trainer.log("run directory: \(dir.url.path)")
                if config.validationSplit != nil && trainer.testSet == nil {
                    trainer.log("no test set: the data has no test split and --validation-split uses the held-out images; give --test-data to test the result")
                }
                RunSupport.logData(DataReport(parts.compactMap { name, d in d.map { (name, $0) } }), log: trainer.log, directory: dir)
            }
            var budget = ["epochs": Double(config.epochs)]
            if let timeBudget { budget["seconds"] = timeBudget.seconds }
            var manifest = RunManifest(kind: "train", method: "darts-evaluation", seed: config.seed, ranks: comm.size, threadsPerRank: threads,
                                       budget: budget, dataset: RunManifest.Dataset(config.data, splits: parts), status: .failed)
            manifest.started = RunManifest.timestamp(Date(timeIntervalSince1970: RunSupport.startTime))
            manifest.setBest(config.genotype, validationAccuracy: nil, testAccuracy: nil)
            let outcome: Trainer.Outcome
            do { outcome = try trainer.run() } catch {
                if comm.rank == 0 {
                    manifest.statusDetail = "\(error)"
                    try? manifest.write(to: dir)
                }
                throw error
            }
            switch outcome {
            case .finished(let r):
                manifest.status = .finished
                manifest.setBest(config.genotype, validationAccuracy: r.validationAccuracy, testAccuracy: r.testAccuracy)
                if comm.rank == 0 {
                    try manifest.write(to: dir)
                    trainer.log(Self.resultLine(r, best: trainer.bestCheckpoint))
                }
            case .interrupted(let sig):
                manifest.status = .interrupted
                manifest.statusDetail = "signal \(sig)"
                if comm.rank == 0 { try manifest.write(to: dir) }
                throw RunSupport.exitStatus(interruptedBy: sig, comm: comm)
            case .outOfTime:
                manifest.status = .outOfTime
                if comm.rank == 0 { try manifest.write(to: dir) }
                throw RunSupport.exitStatus(interruptedBy: nil, comm: comm)
            }
        }
    }

    /// The closing line: what best.bin holds and its test accuracy.
    static func resultLine(_ r: Trainer.Result, best: URL) -> String {
        let test = r.testAccuracy.map { String(format: "test accuracy %.2f%%", 100 * $0) } ?? "test set not evaluated"
        if let v = r.validationAccuracy {
            return String(format: "best validation accuracy: %.2f%% at epoch %d (%@); %@", 100 * v, r.selectedEpoch, best.path, test)
        }
        return "final epoch \(r.selectedEpoch) (\(best.path), the last epoch: without --validation-split no epoch is chosen by test accuracy); \(test)"
    }
}

extension TrainCommand {
    /// The `--genotype` argument as recorded in config.json: a file as its absolute path (the
    /// report attributes a training to the search whose directory holds it), a name as given.
    static func source(_ nameOrPath: String) -> String {
        FileManager.default.fileExists(atPath: nameOrPath) ? URL(fileURLWithPath: nameOrPath).standardizedFileURL.path : nameOrPath
    }
}
