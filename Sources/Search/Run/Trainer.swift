import Distributed
import Foundation
import Kernels

/// The evaluation phase (reference `train.py`): a network built from a genotype, trained from
/// scratch with SGD (cosine to the minimum), gradient clipping, the auxiliary loss, drop path
/// ramped linearly over the epochs, and the dataset's augmentation (crop, flip, cutout). Data
/// parallel exactly as the search: the global batch is split over ranks and gradients are averaged
/// with one fused allreduce.
///
/// Model selection never looks at the test set. With a validation split every epoch is validated,
/// best.bin is the epoch of the best validation accuracy, and the test set is evaluated once, at
/// the end, on best.bin's weights. Without one best.bin is the last epoch, and the test set is
/// evaluated after every epoch as a record only (the reference's `train.py` does the same).
/// `TrainConfig.evaluateTest` false skips the test set entirely.
///
/// Writes to its run directory: config.json, metrics.jsonl (per epoch: lr, drop path, train,
/// validation and test loss and accuracy as measured, seconds), checkpoint.bin (last), best.bin
/// (the selected epoch), cost.json and log.txt.
public final class Trainer: EpochTask {
    public let config: TrainConfig
    public let directory: RunDirectory
    public let comm: Communicator
    public let threads: Int
    public let network: EvalNetwork
    public let optimizer: SGD
    public let schedule: CosineAnnealing
    public let trainSet: ImageDataset
    /// The held-out validation images (`TrainConfig.validationSplit`).
    public let validationSet: ImageDataset?
    /// The test images (nil when `evaluateTest` is false, or with a validation split on data
    /// without a test split).
    public let testSet: ImageDataset?
    public let averager: GradientAverager
    /// The loop (progress, logging and stop requests are set on it).
    public private(set) var loop: EpochLoop!
    /// The selected epoch (1-based; 0 before the first) and its validation figures.
    private var best = (epoch: 0, accuracy: -1.0, loss: Double.nan)
    private var dropProbability: Float = 0
    private let statisticsReducer: StatisticsReducer?
    /// Forward, backward, allreduce, clipping and SGD of one batch.
    private let trainingStep: EvalTrainingStep

    public var log: (String) -> Void { get { loop.log } set { loop.log = newValue } }
    public var progress: ((String) -> Void)? { get { loop.progress } set { loop.progress = newValue } }
    public var logEvery: Int { get { loop.logEvery } set { loop.logEvery = newValue } }
    public var stopRequested: () -> Int32? { get { loop.stopRequested } set { loop.stopRequested = newValue } }
    /// Stop with a checkpoint before this time (`--time-budget`).
    public var deadline: Date? { get { loop.deadline } set { loop.deadline = newValue } }
    /// Called on every rank after each step and before each evaluation batch (a task farm's
    /// controller serves other groups here).
    public var betweenSteps: () throws -> Void { get { loop.betweenSteps } set { loop.betweenSteps = newValue } }

    /// The path of the selected checkpoint: the best validation accuracy, or the last epoch.
    public var bestCheckpoint: URL { directory.file("best.bin") }

    public init(config: TrainConfig, directory: RunDirectory, resume: Bool, communicator: Communicator = LocalCommunicator(),
                threads: Int = Parallel.threads) throws {
        try config.validate()
        guard config.batchSize % communicator.size == 0, config.batchSize / communicator.size >= 2 || config.syncBatchNorm else {
            throw SearchConfigError("--batch-size \(config.batchSize) (the global batch) must be divisible by the \(communicator.size) ranks, with at least 2 images per rank")
        }
        self.config = config
        self.directory = directory
        self.comm = communicator
        self.threads = threads
        averager = GradientAverager(communicator)
        try MemoryEstimate.train(config, ranks: communicator.size)?.check(advice: MemoryEstimate.trainAdvice)
        let data = try config.loadData()
        let train = data.train
        trainSet = train
        validationSet = data.validation
        testSet = data.test
        guard config.batchSize <= trainSet.count else {
            throw SearchConfigError("--batch-size \(config.batchSize) is larger than the \(trainSet.count) training images")
        }
        network = try EvalNetwork(config.networkConfig(inputShape: train.imageShape, classes: train.classes),
                                  genotype: config.genotype, seed: config.seed)
        network.recompute = config.recompute
        optimizer = SGD(parameters: network.weights, learningRate: config.learningRate, momentum: config.momentum,
                        weightDecay: config.weightDecay)
        schedule = CosineAnnealing(base: config.learningRate, minimum: config.learningRateMin, period: config.epochs)
        statisticsReducer = config.syncBatchNorm && communicator.size > 1 ? averager.statisticsReducer : nil
        trainingStep = EvalTrainingStep(network: network, optimizer: optimizer, averager: averager, gradClip: config.gradClip,
                                        auxiliaryWeight: config.auxiliaryWeight, statisticsReducer: statisticsReducer)
        loop = EpochLoop(task: self, comm: communicator, directory: directory, averager: averager, trainSet: trainSet,
                         validationSet: nil, epochs: config.epochs, batchSize: config.batchSize, seed: config.seed, threads: threads)
        try loop.start(resume: resume, config: config)
    }

    /// Reads the configuration of an existing run directory (for `--resume` and `evaluate`).
    public static func savedConfig(_ directory: RunDirectory, forResume: Bool = false) throws -> TrainConfig {
        try directory.savedConfig(TrainConfig.self, kind: "training", forResume: forResume)
    }

    public var stepsPerEpoch: Int { loop.stepsPerEpoch }
    public var localBatch: Int { loop.localBatch }
    public var epoch: Int { loop.epoch }

    /// What a finished run measured.
    public struct Result: Equatable, Sendable {
        /// The epoch (1-based) whose weights best.bin holds.
        public var selectedEpoch: Int
        /// Its validation accuracy and loss (nil without a validation split).
        public var validationAccuracy: Double?
        public var validationLoss: Double?
        /// The test accuracy and loss of best.bin's weights (nil when the test set is not evaluated).
        public var testAccuracy: Double?
        public var testLoss: Double?
    }

    public enum Outcome: Equatable {
        case finished(Result)
        case interrupted(signal: Int32)
        /// Stopped with a checkpoint before the time budget ran out (`deadline`).
        case outOfTime
    }

    /// Trains the remaining epochs; when they are done, tests best.bin (with a validation split)
    /// or reports the last epoch's test figures (without one).
    public func run() throws -> Outcome {
        switch try loop.run() {
        case .finished: break
        case .interrupted(let sig): return .interrupted(signal: sig)
        case .outOfTime: return .outOfTime
        }
        var result = Result(selectedEpoch: best.epoch)
        if validationSet != nil {
            result.validationAccuracy = best.accuracy
            result.validationLoss = best.loss
            if testSet != nil {
                try restoreSelected()
                let (loss, accuracy) = try test()
                (result.testLoss, result.testAccuracy) = (loss, accuracy)
                loop.record(String(format: "test of best.bin (epoch %d, validation accuracy %.2f%%): loss %.4f, accuracy %.2f%%",
                                   best.epoch, 100 * best.accuracy, loss, 100 * accuracy))
            }
        } else if let last = loop.metrics.last?.object {
            result.selectedEpoch = last["epoch"]?.int ?? best.epoch
            result.testAccuracy = last["test_acc"]?.double
            result.testLoss = last["test_loss"]?.double
        }
        return .finished(result)
    }

    /// Test loss and accuracy in eval mode (the network's current weights).
    public func test() throws -> (loss: Double, accuracy: Double) {
        guard let testSet else { throw RunError("this run has no test set") }
        return try evaluate(testSet, batchSize: config.batchSize, comm: comm, stop: { [unowned self] _, _ in
            try self.betweenSteps()
            return false
        }) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }
    }

    /// Loads best.bin's weights and BatchNorm statistics on every rank (rank 0 reads the file).
    private func restoreSelected() throws {
        var bytes: [UInt8] = comm.rank == 0 ? [UInt8](try CheckpointFile.read(from: bestCheckpoint).encoded()) : []
        if comm.size > 1 { try comm.broadcast(bytes: &bytes) }
        try network.state.restore(from: try CheckpointFile(data: Data(bytes), path: bestCheckpoint.path))
    }

    // MARK: EpochTask

    public var kind: String { "train" }
    public var usesValidationBatches: Bool { false }
    public var replicatedTensors: [Tensor] { network.state.parameters.map(\.variable.value) }
    public var runningStatistics: NamedState { network.state }

    /// The epoch's learning rate; drop path ramps linearly (epoch e uses dropPath * e / epochs).
    public func beginEpoch(_ epoch: Int) -> Float {
        dropProbability = config.dropPath * Float(epoch) / Float(config.epochs)
        let lr = schedule.learningRate(at: epoch)
        optimizer.learningRate = lr
        return lr
    }

    /// Forward (with drop path and the auxiliary loss), backward, allreduce, clipping, SGD.
    public func step(_ batches: StepBatches, epoch: Int, step s: Int, learningRate: Float, control: StepControl) throws -> StepResult {
        let batch = batches.train
        let sampler = DropPathSampler(probability: dropProbability, generator: RandomGenerator(
            seed: config.seed &+ UInt64(comm.rank) &* 0x9E37_79B9, streamID: streamID(.dropout, epoch, s)))
        return try trainingStep(batch, dropPath: sampler)
    }

    public var divergenceAdvice: String {
        "Likely cause: a learning rate too large for this network and data (--learning-rate \(config.learningRate))."
    }

    /// Validation (selects best.bin) or, without a validation split, the test set as a record
    /// (best.bin is then every epoch's state: the last one).
    public func finishEpoch(_ summary: EpochSummary, writeFiles: Bool, stop: @escaping (Int, Int) throws -> Bool) throws -> EpochReport {
        let epoch = summary.epoch + 1
        let poll: (Int, Int) throws -> Bool = { [unowned self] done, total in
            try self.betweenSteps()
            return try stop(done, total)
        }
        var fields: [String: JSONValue] = ["drop_path": .number(Double("\(dropProbability)") ?? Double(dropProbability))]
        var line = String(format: "train loss %.4f acc %.1f%%", summary.trainLoss, 100 * summary.trainAccuracy)
        let selected: Bool
        if let validationSet {
            let (loss, accuracy) = try measure(validationSet, stop: poll)
            guard loss.isFinite else { throw DivergenceError("the validation loss is \(loss) after epoch \(epoch)") }
            fields["valid_loss"] = .number(loss)
            fields["valid_acc"] = .number(accuracy)
            line += String(format: ", valid loss %.4f acc %.2f%%", loss, 100 * accuracy)
            selected = accuracy > best.accuracy
            if selected { best = (epoch, accuracy, loss) }
        } else {
            selected = true
            best = (epoch, -1, .nan)
            if let testSet {
                let (loss, accuracy) = try measure(testSet, stop: poll)
                guard loss.isFinite else { throw DivergenceError("the test loss is \(loss) after epoch \(epoch)") }
                fields["test_loss"] = .number(loss)
                fields["test_acc"] = .number(accuracy)
                line += String(format: ", test loss %.4f acc %.2f%%", loss, 100 * accuracy)
            }
        }
        if writeFiles && selected {
            // The selected checkpoint is the state after this epoch: the loop's counters move on first.
            var file = CheckpointFile(metadata: ["kind": .string(kind), "epoch": .number(Double(epoch)), "step": .number(0),
                                                 "selected_by": .string(validationSet != nil ? "validation_accuracy" : "last_epoch")])
            try addState(to: &file)
            try file.write(to: bestCheckpoint)
        }
        line += String(format: ", lr %.5f, drop path %.3f", summary.learningRate, dropProbability)
        return EpochReport(fields: fields, lines: [line])
    }

    /// Loss and accuracy of the current weights in eval mode.
    private func measure(_ data: ImageDataset, stop: @escaping (Int, Int) throws -> Bool) throws -> (loss: Double, accuracy: Double) {
        try evaluate(data, batchSize: config.batchSize, comm: comm, stop: stop) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }
    }

    public func addState(to file: inout CheckpointFile) throws {
        file.metadata["genotype"] = .string(config.genotype.pythonDescription)
        file.metadata["best_epoch"] = .number(Double(best.epoch))
        if validationSet != nil {
            file.metadata["best_validation_accuracy"] = .number(best.accuracy)
            if best.loss.isFinite { file.metadata["best_validation_loss"] = .number(best.loss) }
        }
        let state = network.state
        state.add(to: &file)
        optimizer.addMomentum(to: &file, names: state.parameters.map(\.name))
    }

    public func restoreState(from file: CheckpointFile) throws {
        let state = network.state
        try state.restore(from: file)
        try optimizer.restoreMomentum(from: file, names: state.parameters.map(\.name))
        let m = file.metadata
        best = (m["best_epoch"]?.int ?? 0, m["best_validation_accuracy"]?.double ?? -1, m["best_validation_loss"]?.double ?? .nan)
    }
}
