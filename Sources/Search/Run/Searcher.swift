import Distributed
import Foundation
import Kernels

/// A weight-sharing search run: a `SearchMethod` (DARTS, PC-DARTS, ...) driven by the `EpochLoop`
/// over the training half of the data, with the validation half for architecture steps and the
/// per-epoch validation pass. Per epoch it adds to the run directory the validation figures and
/// genotype (metrics.jsonl), the normalised architecture parameters by name (alphas.jsonl), and
/// genotype.json / genotype.txt; with `keepEpochWeights`, each epoch's checkpoint in epochs/.
public final class Searcher: EpochTask {
    public let config: SearchConfig
    public let directory: RunDirectory
    public let comm: Communicator
    public let threads: Int
    public let method: SearchMethod
    public let schedule: CosineAnnealing
    public let trainSet: ImageDataset
    public let validationSet: ImageDataset
    public let averager: GradientAverager
    /// The loop (progress, logging, consistency checks and stop requests are set on it).
    public private(set) var loop: EpochLoop!
    private var alphaHistory: [JSONValue] = []
    /// `--hessian-eigenvalue` (nil: off).
    private let hessian: HessianEigenvalue?
    /// `--early-stop` rules and their evidence (nil: off).
    private let earlyStopping: EarlyStopping?

    public var network: SearchNetwork { method.network }
    public var log: (String) -> Void { get { loop.log } set { loop.log = newValue } }
    public var progress: ((String) -> Void)? { get { loop.progress } set { loop.progress = newValue } }
    public var logEvery: Int { get { loop.logEvery } set { loop.logEvery = newValue } }
    public var consistencyInterval: Int { get { loop.consistencyInterval } set { loop.consistencyInterval = newValue } }
    public var stopRequested: () -> Int32? { get { loop.stopRequested } set { loop.stopRequested = newValue } }
    /// Stop with a checkpoint before this time (`--time-budget`).
    public var deadline: Date? { get { loop.deadline } set { loop.deadline = newValue } }

    /// Sets up a new run (writing config.json) or, with `resume`, restores the checkpoint.
    /// Data is loaded and every flag checked before anything is written.
    public init(config: SearchConfig, directory: RunDirectory, resume: Bool, communicator: Communicator = LocalCommunicator(),
                threads: Int = Parallel.threads) throws {
        try config.validate()
        guard config.batchSize % communicator.size == 0 else {
            throw SearchConfigError("--batch-size \(config.batchSize) (the global batch) must be divisible by the \(communicator.size) ranks")
        }
        guard config.batchSize / communicator.size >= 2 || config.syncBatchNorm else {
            throw SearchConfigError("--batch-size \(config.batchSize) over \(communicator.size) ranks leaves \(config.batchSize / communicator.size) image per rank; BatchNorm needs 2 (or use --sync-bn)")
        }
        self.config = config
        averager = GradientAverager(communicator)
        self.directory = directory
        self.comm = communicator
        self.threads = threads
        try MemoryEstimate.search(config, ranks: communicator.size)?.check(advice: MemoryEstimate.searchAdvice)
        (trainSet, validationSet, _) = try config.loadSplits()
        guard config.batchSize <= trainSet.count, config.batchSize <= validationSet.count else {
            throw SearchConfigError("--batch-size \(config.batchSize) is larger than the data: \(trainSet.count + validationSet.count) training images split into \(trainSet.count) for weights and \(validationSet.count) for the architecture")
        }
        method = try config.method.make(config, inputShape: trainSet.imageShape, classes: trainSet.classes, averager: averager)
        hessian = config.hessianEigenvalue == true ? HessianEigenvalue(seed: config.seed) : nil
        earlyStopping = config.earlyStop.map { EarlyStopping(rules: $0) }
        schedule = CosineAnnealing(base: config.learningRate, minimum: config.learningRateMin, period: config.epochs)
        loop = EpochLoop(task: self, comm: communicator, directory: directory, averager: averager, trainSet: trainSet,
                         validationSet: validationSet, epochs: config.epochs, batchSize: config.batchSize, seed: config.seed,
                         threads: threads)
        loop.keepEpochCheckpoints = config.keepEpochWeights == true
        var loaded: String?
        try loop.start(resume: resume, config: config, prepare: {
            loaded = try config.initWeights.map { try loadInitialWeights($0) }
        })
        if let loaded { loop.record(loaded) }
    }

    /// Replaces the initial weights (and the architecture parameters the file holds, by name) by
    /// a safetensors file's; returns a line for the log.
    private func loadInitialWeights(_ path: String) throws -> String {
        let file = try Safetensors.read(URL(fileURLWithPath: path))
        do { try network.state.restore(from: file) } catch {
            throw RunError("--init-weights \(path) does not fit this supernet: \(error)")
        }
        var found: [String] = [], missing: [String] = []
        for v in network.architecture {
            if file.contains(v.name) {
                v.value = try file.tensor(v.name, shape: v.shape)
                found.append(v.name)
            } else {
                missing.append(v.name)
            }
        }
        return "initial weights from \(path)" + (found.isEmpty ? "" : "; architecture parameters \(found.joined(separator: ", ")) from the file")
            + (missing.isEmpty ? "" : "; \(missing.joined(separator: ", ")) not in the file: they start fresh (seed \(config.seed))")
    }

    /// Reads the configuration of an existing run directory (for `--resume`).
    public static func savedConfig(_ directory: RunDirectory) throws -> SearchConfig {
        try directory.savedConfig(SearchConfig.self, kind: "search", forResume: true)
    }

    /// The early-stopping decision, once a rule fired.
    public var earlyStop: EarlyStopDecision? { earlyStopping?.decision }

    public var stepsPerEpoch: Int { loop.stepsPerEpoch }
    public var localBatch: Int { loop.localBatch }

    /// The outcome of `run`.
    public enum Outcome: Equatable {
        case finished(Genotype)
        case interrupted(signal: Int32)
        /// Stopped with a checkpoint before the time budget ran out (`deadline`).
        case outOfTime
    }

    /// Runs the remaining epochs, then `--bn-reset`. Returns early after writing a checkpoint when
    /// a signal arrives.
    public func run() throws -> Outcome {
        switch try loop.run() {
        case .finished:
            if let n = config.bnReset { try resetBatchNorm(batches: n) }
            if let decision = earlyStopping?.decision {
                try loop.updateCost()
                return .finished(try Genotype(python: decision.genotype))
            }
            let genotype = try method.finalGenotype(SearchEnd(trainSet: trainSet, validationSet: validationSet,
                                                              batchSize: config.batchSize, comm: comm, directory: directory,
                                                              log: { [unowned self] in loop.record($0) }))
            // The last epoch wrote the method's current genotype; a method that chooses at the
            // end may have chosen another.
            if comm.rank == 0 {
                try directory.writeJSON(genotype, to: directory.genotypeJSON)
                try AtomicFile.write(genotype.pythonDescription + "\n", to: directory.genotypeText)
            }
            try loop.updateCost()
            return .finished(genotype)
        case .interrupted(let sig): return .interrupted(signal: sig)
        case .outOfTime: return .outOfTime
        }
    }

    /// `--bn-reset`: the supernet's BatchNorm statistics reset and recomputed as the cumulative
    /// average over `batches` batches of the weights' training images (no augmentation, a fixed
    /// order from the seed, each global batch split over the ranks, then averaged over ranks),
    /// then the validation pass again; a metrics.jsonl line and a log line give both passes.
    /// The checkpoint keeps the statistics of the last epoch.
    public func resetBatchNorm(batches: Int) throws {
        let before = loop.metrics.last?.object
        try BatchNormRecalibration.run(network.state, data: trainSet, batches: batches, batchSize: localBatch, seed: config.seed,
                                       comm: comm, shard: (comm.rank, comm.size)) { batch in
            _ = try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: true))
        }
        let (loss, accuracy) = try evaluate(validationSet)
        var fields: [String: JSONValue] = ["bn_reset_batches": .number(Double(batches)), "val_loss": .number(loss),
                                           "val_acc": .number(accuracy)]
        if let b = before?["val_loss"] { fields["val_loss_before_bn_reset"] = b }
        if let b = before?["val_acc"] { fields["val_acc_before_bn_reset"] = b }
        if let e = before?["epoch"] { fields["epoch"] = e }
        try loop.appendMetrics(fields)
        let was = (before?["val_loss"]?.double, before?["val_acc"]?.double)
        loop.record(String(format: "BatchNorm reset: statistics recomputed over %d training batches of %d images: val loss %@%.4f, acc %@%.1f%%",
                           batches, config.batchSize, was.0.map { String(format: "%.4f -> ", $0) } ?? "", loss,
                           was.1.map { String(format: "%.1f%% -> ", 100 * $0) } ?? "", 100 * accuracy))
    }

    /// The position in the epoch's permutation where a rank's shard starts (see `EpochLoop`).
    public static func shardStart(step: Int, batch: Int, rank: Int, ranks: Int) -> Int {
        EpochLoop.shardStart(step: step, batch: batch, rank: rank, ranks: ranks)
    }

    /// A hash of the weights and architecture parameters (identical on all ranks).
    public func stateHash() -> UInt64 { loop.stateHash() }

    /// Mean loss and top-1 accuracy over a dataset in eval mode (running BatchNorm statistics).
    public func evaluate(_ data: ImageDataset) throws -> (loss: Double, accuracy: Double) {
        try Search.evaluate(data, batchSize: config.batchSize, comm: comm) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false))
        }
    }

    // MARK: EpochTask

    public var kind: String { "search" }
    public var usesValidationBatches: Bool { true }
    public var replicatedTensors: [Tensor] { network.state.parameters.map(\.variable.value) + network.architecture.map(\.value) }
    public var runningStatistics: NamedState { network.state }

    public func beginEpoch(_ epoch: Int) -> Float {
        method.training.epoch = epoch
        return method.learningRate(epoch: epoch) ?? schedule.learningRate(at: epoch)
    }

    public func step(_ batches: StepBatches, epoch: Int, step: Int, learningRate: Float, control: StepControl) throws -> StepResult {
        try method.step(train: batches.train, validation: batches.validation!, epoch: epoch, learningRate: learningRate, control: control)
    }

    public var divergenceAdvice: String {
        "Likely causes: a learning rate too large for this data (--learning-rate \(config.learningRate), --arch-learning-rate \(config.archLearningRate))"
            + (config.initWeights.map { ", or non-finite weights in --init-weights \($0)" } ?? "") + "."
    }

    public func finishEpoch(_ summary: EpochSummary, writeFiles: Bool, stop: @escaping (Int, Int) throws -> Bool) throws -> EpochReport {
        let (valLoss, valAcc) = try Search.evaluate(validationSet, batchSize: config.batchSize, comm: comm, stop: stop) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false))
        }
        guard valLoss.isFinite else { throw DivergenceError("the validation loss is \(valLoss) after epoch \(summary.epoch + 1)") }
        let genotype = try method.genotype()
        var normalised: [String: JSONValue] = [:]
        for (name, value) in try network.architectureParameters.normalised() { normalised[name] = jsonRows(value) }
        var entry = normalised
        entry["epoch"] = .number(Double(summary.epoch + 1))
        entry["primitives"] = .array(network.config.primitives.map { .string($0.name) })
        alphaHistory.append(.object(entry))
        let warm = method.isWarmUp(epoch: summary.epoch)
        var fields: [String: JSONValue] = [
            "val_loss": .number(valLoss), "val_acc": .number(valAcc), "genotype": .string(genotype.pythonDescription),
            "warm_up": .bool(warm),
        ]
        if let a = summary.architectureLoss { fields["arch_val_loss"] = .number(a) }
        let diagnostics = try CollapseDiagnostics(genotype: genotype, alphas: network.architecture.map(\.value))
        fields.merge(diagnostics.fields) { $1 }
        let regularizer = method.training.regularizer
        if regularizer.betaDecay != 0 {
            fields["beta_regularization"] = .number(Double(regularizer.betaDecayWeight(epoch: summary.epoch, epochs: config.epochs)))
        }
        if regularizer.entropy != 0 {
            fields["entropy_weight"] = .number(Double(regularizer.entropyWeight(epoch: summary.epoch, epochs: config.epochs)))
        }
        var eigenvalue: Double?
        if let hessian {
            let value = try hessian.dominant(of: method, validation: validationSet, batchSize: config.batchSize, averager: averager)
            fields["hessian_eigenvalue"] = .number(value)
            eigenvalue = value
        }
        var kept = genotype
        let decision = earlyStopping?.record(EpochEvidence(
            epoch: summary.epoch + 1, warmUp: warm, genotype: genotype.pythonDescription, skipCount: diagnostics.skipCount,
            ranking: EpochEvidence.ranking(alphas: [network.alphasNormal.value, network.alphasReduce.value], primitives: network.config.primitives),
            eigenvalue: eigenvalue))
        if let decision {
            kept = try Genotype(python: decision.genotype)
            fields["early_stop"] = decision.json
        }
        if writeFiles {
            try directory.writeLines(alphaHistory, to: directory.alphas)
            try directory.writeJSON(kept, to: directory.genotypeJSON)
            try AtomicFile.write(kept.pythonDescription + "\n", to: directory.genotypeText)
            if let decision { try directory.writeJSON(decision.json, to: directory.file("early_stop.json")) }
        }
        // A single-path supernet's validation pass runs the last trained path with the shared
        // running BatchNorm statistics, which fit no one path: the log says so (metrics.jsonl
        // keeps the field name val_acc).
        let validationLabel = config.method.isSinglePath ? "val (last trained path, shared BatchNorm)" : "val"
        let line = String(format: "train loss %.4f acc %.1f%%, %@ loss %.4f acc %.1f%%, lr %.5f, %@%@%@",
                          summary.trainLoss, 100 * summary.trainAccuracy, validationLabel,
                          valLoss, 100 * valAcc, summary.learningRate, diagnostics.summary,
                          eigenvalue.map { String(format: ", hessian eigenvalue %.4g", $0) } ?? "",
                          warm ? " (warm-up: architecture frozen)" : "")
        return EpochReport(fields: fields, lines: [line, "genotype = \(genotype.pythonDescription)"], stop: decision?.summary)
    }

    public func addState(to file: inout CheckpointFile) throws {
        method.addState(to: &file)
        file.metadata["alphas"] = .array(alphaHistory)
        if let earlyStopping { file.metadata["early_stopping"] = try earlyStopping.state }
    }

    public func restoreState(from file: CheckpointFile) throws {
        try method.restoreState(from: file)
        alphaHistory = file.metadata["alphas"]?.array ?? []
        try earlyStopping?.restore(file.metadata["early_stopping"])
    }

    /// Rows of a [R, K] tensor as nested arrays, a vector as one array.
    private func jsonRows(_ t: Tensor) -> JSONValue {
        guard t.shape.count == 2 else { return .array(t.scalars.map { .number(Double($0)) }) }
        let k = t.shape[1]
        return .array((0..<t.shape[0]).map { r in .array((0..<k).map { .number(Double(t.scalars[r * k + $0])) }) })
    }
}
