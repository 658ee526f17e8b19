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
            file holding the reference's Genotype(...) string. The test split is evaluated after every epoch; \
            best.bin keeps the best test accuracy, checkpoint.bin the last epoch. Data without a test split (CSV) \
            holds out a fixed tenth of --data as the test set; a search on the same file has seen those images, \
            so pass an unseen file with --test-data for an honest test accuracy.
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
    @Flag(name: .customLong("sync-bn"), help: "Synchronised BatchNorm over ranks.") var syncBatchNorm = false
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
            if let genotype { c.genotype = try RunSupport.genotype(genotype); c.genotypeSource = genotype }
        } else {
            let name = genotype ?? "DARTS_V2"
            c = TrainConfig.preset(preset ?? .quick, genotype: try RunSupport.genotype(name), source: name)
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
        if syncBatchNorm { c.syncBatchNorm = true }
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
            if comm.rank == 0 && !resume {
                let n = trainer.network
                trainer.log("train: \(config.genotypeSource), \(config.preset.rawValue) preset, C=\(config.channels), \(config.layers) layers, \(n.parameterCountWithoutAuxiliary) parameters\(config.auxiliary ? " (+\(n.state.parameterCount - n.parameterCountWithoutAuxiliary) in the auxiliary head)" : ""), \(config.data.kind.rawValue) data (\(trainer.trainSet.count) train / \(trainer.testSet.count) test images), batch \(config.batchSize), \(config.epochs) epochs, \(comm.size) rank(s) x \(threads) thread(s)")
                trainer.log("run directory: \(dir.url.path)")
                RunSupport.logData(DataReport([("train", trainer.trainSet), ("test", trainer.testSet)]), log: trainer.log, directory: dir)
            }
            switch try trainer.run() {
            case .finished(let best):
                if comm.rank == 0 { trainer.log(String(format: "best test accuracy: %.2f%% (%@)", 100 * best, trainer.bestCheckpoint.path)) }
            case .interrupted(let sig):
                throw RunSupport.exitStatus(interruptedBy: sig)
            case .outOfTime:
                throw RunSupport.exitStatus(interruptedBy: nil)
            }
        }
    }
}
