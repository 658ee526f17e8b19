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
public final class Trainer {
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
    public var log: (String) -> Void = { print($0) }
    public var progress: ((String) -> Void)?
    public var logEvery = 0
    public var stopRequested: () -> Int32? = { Interrupt.received }

    public private(set) var epoch = 0
    public private(set) var stepInEpoch = 0
    private var metrics: [JSONValue] = []
    private var bestAccuracy = -1.0
    private var epochLoss = 0.0, epochCorrect = 0, epochSeen = 0
    private var previousSeconds = 0.0
    private let startTime = Date()

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

        try startRun(comm, directory: directory, resume: resume, config: config, makeState: makeCheckpoint,
                     apply: { try apply($0, announce: resume) })
    }

    /// Reads the configuration of an existing run directory (for `--resume` and `evaluate`).
    public static func savedConfig(_ directory: RunDirectory, requireCheckpoint: Bool = false) throws -> TrainConfig {
        try directory.savedConfig(TrainConfig.self, kind: "training", requireCheckpoint: requireCheckpoint)
    }

    public var stepsPerEpoch: Int { trainSet.count / config.batchSize }
    public var localBatch: Int { config.batchSize / comm.size }

    public enum Outcome: Equatable {
        case finished(bestAccuracy: Double)
        case interrupted(signal: Int32)
    }

    public func run() throws -> Outcome {
        let (b, local, steps) = (config.batchSize, localBatch, stepsPerEpoch)
        let params = network.weights
        let reducer = config.syncBatchNorm && comm.size > 1 ? averager.statisticsReducer : nil
        while epoch < config.epochs {
            let lr = schedule.learningRate(at: epoch)
            optimizer.learningRate = lr
            let dropProbability = config.dropPath * Float(epoch) / Float(config.epochs)
            var orderGenerator = RandomGenerator(seed: config.seed, streamID: streamID(.dataOrder, epoch, 0))
            let order = orderGenerator.permutation(trainSet.count)
            let epochStart = Date()
            let firstStep = stepInEpoch
            averager.resetTimer()
            while stepInEpoch < steps {
                let s = stepInEpoch
                let first = Searcher.shardStart(step: s, batch: b, rank: comm.rank, ranks: comm.size)
                let batch = trainSet.batch(Array(order[first..<(first + local)]), augment: true) { k in
                    RandomGenerator(seed: self.config.seed, streamID: streamID(.augmentation, self.epoch, first + k))
                }
                let sampler = DropPathSampler(probability: dropProbability, generator: RandomGenerator(
                    seed: config.seed &+ UInt64(comm.rank) &* 0x9E37_79B9, streamID: streamID(.dropout, epoch, s)))
                let tape = Tape()
                let ctx = ForwardContext(tape: tape, training: true, statisticsReducer: reducer, dropPath: sampler)
                let (logits, aux) = try network.forward(Variable(batch.images), ctx)
                var loss = try tape.crossEntropy(logits, labels: batch.labels)
                if let aux, config.auxiliaryWeight > 0 {
                    loss = try tape.add(loss, tape.scale(try tape.crossEntropy(aux, labels: batch.labels), config.auxiliaryWeight))
                }
                try tape.backward(loss)
                try averager.average(params)
                clipGradientNorm(params, maxNorm: config.gradClip)
                optimizer.step()
                optimizer.zeroGrad()

                var stats = [Double(loss.value.scalars[0]) * Double(local), Double(correctCount(logits: logits.value, labels: batch.labels)),
                             stopRequested().map(Double.init) ?? 0]
                if comm.size > 1 { try comm.allreduceSum(&stats) }
                epochLoss += stats[0]
                epochCorrect += Int(stats[1])
                epochSeen += b
                stepInEpoch += 1

                let elapsed = Date().timeIntervalSince(epochStart)
                let done = stepInEpoch - firstStep
                let eta = (Double(steps - stepInEpoch) + Double(config.epochs - epoch - 1) * Double(steps)) * elapsed / Double(done)
                let line = String(format: "epoch %d/%d step %d/%d loss %.4f acc %.1f%% %.1f img/s ETA %@",
                                  epoch + 1, config.epochs, stepInEpoch, steps, epochLoss / Double(epochSeen),
                                  100 * Double(epochCorrect) / Double(epochSeen), Double(done * b) / max(elapsed, 1e-9), formatDuration(eta))
                if comm.rank == 0 {
                    if let progress { progress(line) } else if logEvery > 0, stepInEpoch % logEvery == 0 || stepInEpoch == steps { record(line) }
                }
                if stats[2] > 0 {
                    let sig = stopRequested() ?? SIGTERM
                    try writeCheckpoint(to: directory.checkpoint)
                    record("received signal \(sig): checkpoint written at epoch \(epoch + 1) step \(stepInEpoch); continue with --resume")
                    return .interrupted(signal: sig)
                }
            }
            try finishEpoch(lr: lr, dropProbability: dropProbability, seconds: Date().timeIntervalSince(epochStart))
        }
        return .finished(bestAccuracy: bestAccuracy)
    }

    /// Test loss and accuracy in eval mode.
    public func test() throws -> (loss: Double, accuracy: Double) {
        try evaluate(testSet, batchSize: config.batchSize, comm: comm) { batch in
            try network.forward(Variable(batch.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }
    }

    private func finishEpoch(lr: Float, dropProbability: Float, seconds: Double) throws {
        try network.state.averageRunningStatistics(comm)
        let (testLoss, testAcc) = try test()
        metrics.append(.object([
            "epoch": .number(Double(epoch + 1)),
            "lr": .number(Double("\(lr)") ?? Double(lr)),
            "drop_path": .number(Double("\(dropProbability)") ?? Double(dropProbability)),
            "train_loss": .number(epochLoss / Double(max(epochSeen, 1))),
            "train_acc": .number(Double(epochCorrect) / Double(max(epochSeen, 1))),
            "test_loss": .number(testLoss),
            "test_acc": .number(testAcc),
            "seconds": .number(seconds),
            "images_per_second": .number(Double(epochSeen) / max(seconds, 1e-9)),
            "communication_seconds": .number(averager.communicationSeconds),
            "ranks": .number(Double(comm.size)),
        ]))
        record(String(format: "epoch %d/%d done in %.1f s: train loss %.4f acc %.1f%%, test loss %.4f acc %.2f%%, lr %.5f, drop path %.3f",
                      epoch + 1, config.epochs, seconds, epochLoss / Double(max(epochSeen, 1)),
                      100 * Double(epochCorrect) / Double(max(epochSeen, 1)), testLoss, 100 * testAcc, lr, dropProbability))
        epoch += 1
        stepInEpoch = 0
        epochLoss = 0; epochCorrect = 0; epochSeen = 0
        let improved = testAcc > bestAccuracy
        if improved { bestAccuracy = testAcc }
        if comm.rank == 0 {
            try directory.writeLines(metrics, to: directory.metrics)
            if improved { try writeCheckpoint(to: bestCheckpoint) }
        }
        try writeCheckpoint(to: directory.checkpoint)
    }

    // MARK: Checkpoints

    private func writeCheckpoint(to url: URL) throws {
        guard comm.rank == 0 else { return }
        try makeCheckpoint().write(to: url)
        try directory.writeCost(seconds: previousSeconds + Date().timeIntervalSince(startTime), ranks: comm.size, threads: threads, epochs: epoch)
    }

    private func makeCheckpoint() throws -> CheckpointFile {
        var file = CheckpointFile(metadata: [
            "kind": .string("train"),
            "genotype": .string(config.genotype.pythonDescription),
            "epoch": .number(Double(epoch)), "step": .number(Double(stepInEpoch)),
            "ranks": .number(Double(comm.size)),
            "epoch_loss": .number(epochLoss), "epoch_correct": .number(Double(epochCorrect)), "epoch_seen": .number(Double(epochSeen)),
            "best_accuracy": .number(bestAccuracy), "metrics": .array(metrics),
            "seconds": .number(previousSeconds + Date().timeIntervalSince(startTime)),
        ])
        let state = network.state
        state.add(to: &file)
        optimizer.addMomentum(to: &file, names: state.parameters.map(\.name))
        return file
    }

    private func apply(_ file: CheckpointFile, announce: Bool) throws {
        guard file.metadata["kind"]?.string == "train" else { throw RunError("\(directory.checkpoint.path) is not a training checkpoint") }
        let state = network.state
        try state.restore(from: file)
        try optimizer.restoreMomentum(from: file, names: state.parameters.map(\.name))
        let m = file.metadata
        epoch = m["epoch"]?.int ?? 0
        stepInEpoch = m["step"]?.int ?? 0
        epochLoss = m["epoch_loss"]?.double ?? 0
        epochCorrect = m["epoch_correct"]?.int ?? 0
        epochSeen = m["epoch_seen"]?.int ?? 0
        bestAccuracy = m["best_accuracy"]?.double ?? -1
        metrics = m["metrics"]?.array ?? []
        previousSeconds = m["seconds"]?.double ?? 0
        if announce { record("resumed from \(directory.checkpoint.path) at epoch \(epoch + 1) step \(stepInEpoch)") }
    }

    private func record(_ line: String) {
        guard comm.rank == 0 else { return }
        log(line)
        directory.appendLog(line)
    }
}
