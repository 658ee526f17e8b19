import Distributed
import Foundation
import Kernels

/// The evaluation phase (reference `train.py`): a network built from a genotype, trained from
/// scratch with SGD (cosine to the minimum), gradient clipping, the auxiliary loss, drop path
/// ramped linearly over the epochs, and the dataset's augmentation (crop, flip, cutout); tested
/// after every epoch. Data parallel exactly as the search: the global batch is split over ranks and
/// gradients are averaged with one fused allreduce.
///
/// Writes to its run directory: config.json, metrics.jsonl (per epoch: lr, drop path, train and
/// test loss and accuracy, seconds), checkpoint.bin (last), best.bin (best test accuracy),
/// cost.json and log.txt.
public final class Trainer: EpochTask {
    public let config: TrainConfig
    public let directory: RunDirectory
    public let comm: Communicator
    public let threads: Int
    public let network: EvalNetwork
    public let optimizer: SGD
    public let schedule: CosineAnnealing
    public let trainSet: ImageDataset
    public let testSet: ImageDataset
    public let averager: GradientAverager
    /// The loop (progress, logging and stop requests are set on it).
    public private(set) var loop: EpochLoop!
    private var bestAccuracy = -1.0
    private var dropProbability: Float = 0
    private let statisticsReducer: StatisticsReducer?

    public var log: (String) -> Void { get { loop.log } set { loop.log = newValue } }
    public var progress: ((String) -> Void)? { get { loop.progress } set { loop.progress = newValue } }
    public var logEvery: Int { get { loop.logEvery } set { loop.logEvery = newValue } }
    public var stopRequested: () -> Int32? { get { loop.stopRequested } set { loop.stopRequested = newValue } }
    /// Stop with a checkpoint before this time (`--time-budget`).
    public var deadline: Date? { get { loop.deadline } set { loop.deadline = newValue } }

    /// The path of the best checkpoint.
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
        let (train, test, _) = try config.loadData()
        trainSet = train
        testSet = test
        guard config.batchSize <= trainSet.count else {
            throw SearchConfigError("--batch-size \(config.batchSize) is larger than the \(trainSet.count) training images")
        }
        network = try EvalNetwork(config.networkConfig(inputShape: train.imageShape, classes: train.classes),
                                  genotype: config.genotype, seed: config.seed)
        optimizer = SGD(parameters: network.weights, learningRate: config.learningRate, momentum: config.momentum,
                        weightDecay: config.weightDecay)
        schedule = CosineAnnealing(base: config.learningRate, minimum: config.learningRateMin, period: config.epochs)
        statisticsReducer = config.syncBatchNorm && communicator.size > 1 ? averager.statisticsReducer : nil
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

    public enum Outcome: Equatable {
        case finished(bestAccuracy: Double)
        case interrupted(signal: Int32)
        /// Stopped with a checkpoint before the time budget ran out (`deadline`).
        case outOfTime
    }

    public func run() throws -> Outcome {
        switch try loop.run() {
        case .finished: return .finished(bestAccuracy: bestAccuracy)
        case .interrupted(let sig): return .interrupted(signal: sig)
        case .outOfTime: return .outOfTime
        }
    }

    /// Test loss and accuracy in eval mode.
    public func test() throws -> (loss: Double, accuracy: Double) {
        try evaluate(testSet, batchSize: config.batchSize, comm: comm) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }
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
        let tape = Tape()
        let ctx = ForwardContext(tape: tape, training: true, statisticsReducer: statisticsReducer, dropPath: sampler)
        let (logits, aux) = try network.forward(Variable(batch.images), ctx)
        var loss = try tape.crossEntropy(logits, labels: batch.labels)
        if let aux, config.auxiliaryWeight > 0 {
            loss = try tape.add(loss, tape.scale(try tape.crossEntropy(aux, labels: batch.labels), config.auxiliaryWeight))
        }
        try tape.backward(loss)
        let params = optimizer.parameters
        try averager.average(params)
        let norm = clipGradientNorm(params, maxNorm: config.gradClip)
        guard norm.isFinite, loss.value.scalars[0].isFinite else {
            throw DivergenceError("the training loss is \(loss.value.scalars[0]) and the gradient's norm \(norm)")
        }
        optimizer.step()
        optimizer.zeroGrad()
        return StepResult(loss: Double(loss.value.scalars[0]), correct: correctCount(logits: logits.value, labels: batch.labels))
    }

    public var divergenceAdvice: String {
        "Likely cause: a learning rate too large for this network and data (--learning-rate \(config.learningRate))."
    }

    public func finishEpoch(_ summary: EpochSummary, writeFiles: Bool, stop: @escaping (Int, Int) throws -> Bool) throws -> EpochReport {
        let (testLoss, testAcc) = try evaluate(testSet, batchSize: config.batchSize, comm: comm, stop: stop) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }
        guard testLoss.isFinite else { throw DivergenceError("the test loss is \(testLoss) after epoch \(summary.epoch + 1)") }
        let improved = testAcc > bestAccuracy
        if improved { bestAccuracy = testAcc }
        if writeFiles && improved {
            // The best checkpoint is the state after this epoch: the loop's counters move on first.
            var file = CheckpointFile(metadata: ["kind": .string(kind), "epoch": .number(Double(summary.epoch + 1)), "step": .number(0)])
            try addState(to: &file)
            try file.write(to: bestCheckpoint)
        }
        let line = String(format: "train loss %.4f acc %.1f%%, test loss %.4f acc %.2f%%, lr %.5f, drop path %.3f",
                          summary.trainLoss, 100 * summary.trainAccuracy,
                          testLoss, 100 * testAcc, summary.learningRate, dropProbability)
        return EpochReport(fields: [
            "drop_path": .number(Double("\(dropProbability)") ?? Double(dropProbability)),
            "test_loss": .number(testLoss),
            "test_acc": .number(testAcc),
        ], lines: [line])
    }

    public func addState(to file: inout CheckpointFile) throws {
        file.metadata["genotype"] = .string(config.genotype.pythonDescription)
        file.metadata["best_accuracy"] = .number(bestAccuracy)
        let state = network.state
        state.add(to: &file)
        optimizer.addMomentum(to: &file, names: state.parameters.map(\.name))
    }

    public func restoreState(from file: CheckpointFile) throws {
        let state = network.state
        try state.restore(from: file)
        try optimizer.restoreMomentum(from: file, names: state.parameters.map(\.name))
        bestAccuracy = file.metadata["best_accuracy"]?.double ?? -1
    }
}
