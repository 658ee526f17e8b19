import Distributed
import Foundation
import Kernels

/// The DARTS search loop (reference `train_search.py`): per step an architecture update on a
/// validation batch, then a weight update on a training batch; per epoch a validation pass,
/// metrics, alphas, genotype and a checkpoint.
///
/// Randomness is counter-based: the data order of epoch e and the augmentation of step s are drawn
/// from generators made from (seed, e, s), so a run resumed from a checkpoint taken at any step
/// repeats exactly what the uninterrupted run would have done (same seed, ranks and threads).
public final class Searcher {
    public let config: SearchConfig
    public let directory: RunDirectory
    public let comm: Communicator
    public let threads: Int
    public let network: SearchNetwork
    public let architect: Architect
    public let optimizer: SGD
    public let schedule: CosineAnnealing
    public let trainSet: ImageDataset
    public let validationSet: ImageDataset
    public var log: (String) -> Void = { print($0) }
    /// Live progress (a terminal line); nil prints nothing between log lines.
    public var progress: ((String) -> Void)?
    /// Log a plain progress line every this many steps when `progress` is nil (0: never).
    public var logEvery = 0

    public private(set) var epoch = 0
    public private(set) var stepInEpoch = 0
    private var metrics: [JSONValue] = []
    private var alphaHistory: [JSONValue] = []
    private var epochLoss = 0.0, epochCorrect = 0, epochSeen = 0, epochArchLoss = 0.0
    private var previousSeconds = 0.0
    private let startTime = Date()

    /// Sets up a new run (writing config.json) or, with `resume`, restores the checkpoint.
    /// Data is loaded and every flag checked before anything is written.
    public init(config: SearchConfig, directory: RunDirectory, resume: Bool, communicator: Communicator = LocalCommunicator(),
                threads: Int = Parallel.threads) throws {
        try config.validate()
        self.config = config
        self.directory = directory
        self.comm = communicator
        self.threads = threads
        let split = try config.data.load()
        var full = split.train
        if let limit = config.trainLimit, limit < full.count { full = full.subset(Array(0..<limit)) }
        // The reference splits CIFAR-10's training set into its first and second half. Files sorted
        // by label (common for CSV) would then give class-disjoint halves, so the images are first
        // put in a fixed shuffled order (the same for every seed), then split.
        var splitGenerator = RandomGenerator(seed: 0x5EA2C4, stream: .dataOrder)
        let order = splitGenerator.permutation(full.count)
        let nTrain = Int((config.trainPortion * Double(full.count)).rounded(.down))
        trainSet = full.subset(Array(order[0..<nTrain]))
        validationSet = full.subset(Array(order[nTrain...]))
        guard config.batchSize <= trainSet.count, config.batchSize <= validationSet.count else {
            throw SearchConfigError("--batch-size \(config.batchSize) is larger than the data: \(full.count) training images split into \(trainSet.count) for weights and \(validationSet.count) for the architecture")
        }
        let net = SupernetConfig(channels: config.channels, layers: config.layers, inputShape: full.imageShape,
                                 classes: full.classes, primitives: config.primitives)
        network = try SearchNetwork(net, seed: config.seed)
        architect = Architect(model: network, learningRate: config.archLearningRate, weightDecay: config.archWeightDecay)
        optimizer = SGD(parameters: network.weights, learningRate: config.learningRate, momentum: config.momentum,
                        weightDecay: config.weightDecay)
        schedule = CosineAnnealing(base: config.learningRate, minimum: config.learningRateMin, period: config.epochs)

        if resume {
            let saved = try JSONDecoder().decode(SearchConfig.self, from: try Data(contentsOf: directory.config))
            guard saved == config else { throw RunError("\(directory.config.path) differs from the configuration being resumed") }
            try restore(try CheckpointFile.read(from: directory.checkpoint))
        } else if comm.rank == 0 {
            try directory.create()
            try directory.writeJSON(config, to: directory.config)
        }
    }

    /// Reads the configuration of an existing run directory (for `--resume`).
    public static func savedConfig(_ directory: RunDirectory) throws -> SearchConfig {
        guard let data = FileManager.default.contents(atPath: directory.config.path) else {
            throw RunError("\(directory.url.path) holds no run to resume (no config.json)")
        }
        guard FileManager.default.fileExists(atPath: directory.checkpoint.path) else {
            throw RunError("\(directory.url.path) holds no checkpoint to resume from")
        }
        do { return try JSONDecoder().decode(SearchConfig.self, from: data) } catch {
            throw RunError("\(directory.config.path) is not a valid configuration: \(error)")
        }
    }

    public var stepsPerEpoch: Int { trainSet.count / config.batchSize }

    /// The outcome of `run`.
    public enum Outcome: Equatable {
        case finished(Genotype)
        case interrupted(signal: Int32)
    }

    /// Runs the remaining epochs. Returns early after writing a checkpoint when a signal arrives.
    public func run() throws -> Outcome {
        let steps = stepsPerEpoch
        let b = config.batchSize
        let params = network.weights
        architect.reduceGradients = { [comm] vs in try Self.averageGradients(vs, comm) }
        while epoch < config.epochs {
            let lr = schedule.learningRate(at: epoch)
            optimizer.learningRate = lr
            var orderGenerator = RandomGenerator(seed: config.seed, streamID: Self.stream(.dataOrder, epoch, 0))
            let trainOrder = orderGenerator.permutation(trainSet.count)
            let valOrder = orderGenerator.permutation(validationSet.count)
            let epochStart = Date()
            let firstStep = stepInEpoch
            while stepInEpoch < steps {
                let s = stepInEpoch
                var aug = RandomGenerator(seed: config.seed, streamID: Self.stream(.augmentation, epoch, s))
                let train = trainSet.batch(Array(trainOrder[(s * b)..<((s + 1) * b)]), augment: true, generator: &aug)
                let valIndices = (0..<b).map { valOrder[(s * b + $0) % valOrder.count] }
                let val = validationSet.batch(valIndices, augment: true, generator: &aug)

                let archLoss = try architect.step(train: train, validation: val, eta: lr, weightOptimizer: optimizer,
                                                  secondOrder: config.order == 2)

                // Weight step: the alphas are constants here.
                network.architecture.forEach { $0.requiresGrad = false }
                let tape = Tape()
                let (loss, logits) = try network.loss(train.images, train.labels, ForwardContext(tape: tape, training: true))
                try tape.backward(loss)
                network.architecture.forEach { $0.requiresGrad = true }
                try Self.averageGradients(params, comm)
                clipGradientNorm(params, maxNorm: config.gradClip)
                optimizer.step()
                optimizer.zeroGrad()

                epochLoss += Double(loss.value.scalars[0]) * Double(b)
                epochArchLoss += Double(archLoss) * Double(b)
                epochCorrect += correctCount(logits: logits.value, labels: train.labels)
                epochSeen += b
                stepInEpoch += 1

                let elapsed = Date().timeIntervalSince(epochStart)
                let done = stepInEpoch - firstStep
                let rate = Double(done * b) / max(elapsed, 1e-9)
                let eta = Double(steps - stepInEpoch) * elapsed / Double(done) + Double(config.epochs - epoch - 1) * Double(steps) * elapsed / Double(done)
                let line = String(format: "epoch %d/%d step %d/%d loss %.4f acc %.1f%% %.1f img/s ETA %@",
                                  epoch + 1, config.epochs, stepInEpoch, steps, epochLoss / Double(epochSeen),
                                  100 * Double(epochCorrect) / Double(epochSeen), rate, Self.duration(eta))
                if comm.rank == 0 {
                    if let progress { progress(line) } else if logEvery > 0, stepInEpoch % logEvery == 0 || stepInEpoch == steps { record(line) }
                }
                if let sig = Interrupt.received {
                    try checkpoint()
                    record("received signal \(sig): checkpoint written at epoch \(epoch + 1) step \(stepInEpoch); continue with --resume")
                    return .interrupted(signal: sig)
                }
            }
            try finishEpoch(lr: lr, seconds: Date().timeIntervalSince(epochStart))
        }
        return .finished(try network.genotype())
    }

    /// Validation pass, metrics, alphas, genotype and checkpoint at the end of an epoch.
    private func finishEpoch(lr: Float, seconds: Double) throws {
        let (valLoss, valAcc) = try evaluate(validationSet)
        let genotype = try network.genotype()
        let record: [String: JSONValue] = [
            "epoch": .number(Double(epoch + 1)),
            "lr": .number(Double("\(lr)") ?? Double(lr)),
            "train_loss": .number(epochLoss / Double(max(epochSeen, 1))),
            "train_acc": .number(Double(epochCorrect) / Double(max(epochSeen, 1))),
            "arch_val_loss": .number(epochArchLoss / Double(max(epochSeen, 1))),
            "val_loss": .number(valLoss),
            "val_acc": .number(valAcc),
            "seconds": .number(seconds),
            "images_per_second": .number(Double(epochSeen) / max(seconds, 1e-9)),
            "genotype": .string(genotype.pythonDescription),
        ]
        metrics.append(.object(record))
        alphaHistory.append(.object([
            "epoch": .number(Double(epoch + 1)),
            "normal": try softmaxRows(network.alphasNormal.value),
            "reduce": try softmaxRows(network.alphasReduce.value),
            "primitives": .array(config.primitives.map { .string($0.name) }),
        ]))
        self.record(String(format: "epoch %d/%d done in %.1f s: train loss %.4f acc %.1f%%, val loss %.4f acc %.1f%%, lr %.5f",
                           epoch + 1, config.epochs, seconds, epochLoss / Double(max(epochSeen, 1)),
                           100 * Double(epochCorrect) / Double(max(epochSeen, 1)), valLoss, 100 * valAcc, lr))
        self.record("genotype = \(genotype.pythonDescription)")
        epoch += 1
        stepInEpoch = 0
        epochLoss = 0; epochCorrect = 0; epochSeen = 0; epochArchLoss = 0
        if comm.rank == 0 {
            try directory.writeLines(metrics, to: directory.metrics)
            try directory.writeLines(alphaHistory, to: directory.alphas)
            try directory.writeJSON(genotype, to: directory.genotypeJSON)
            try AtomicFile.write(genotype.pythonDescription + "\n", to: directory.genotypeText)
        }
        try checkpoint()
    }

    /// Mean loss and top-1 accuracy over a dataset in eval mode (running BatchNorm statistics).
    public func evaluate(_ data: ImageDataset) throws -> (loss: Double, accuracy: Double) {
        var lossSum = 0.0, correct = 0
        var g = RandomGenerator(seed: config.seed)
        var start = 0
        while start < data.count {
            let idx = Array(start..<min(start + config.batchSize, data.count))
            let batch = data.batch(idx, augment: false, generator: &g)
            let (loss, logits) = try network.loss(batch.images, batch.labels, ForwardContext(tape: Tape(recording: false), training: false))
            lossSum += Double(loss.value.scalars[0]) * Double(idx.count)
            correct += correctCount(logits: logits.value, labels: batch.labels)
            start += idx.count
        }
        return (lossSum / Double(max(data.count, 1)), Double(correct) / Double(max(data.count, 1)))
    }

    // MARK: Checkpoints

    private func checkpoint() throws {
        guard comm.rank == 0 else { return }
        var file = CheckpointFile(metadata: [
            "kind": .string("search"),
            "epoch": .number(Double(epoch)),
            "step": .number(Double(stepInEpoch)),
            "seed": .number(Double(config.seed)),
            "adam_step": .number(Double(architect.optimizer.stepCount)),
            "epoch_loss": .number(epochLoss), "epoch_arch_loss": .number(epochArchLoss),
            "epoch_correct": .number(Double(epochCorrect)), "epoch_seen": .number(Double(epochSeen)),
            "metrics": .array(metrics), "alphas": .array(alphaHistory),
            "seconds": .number(totalSeconds),
        ])
        let state = network.state
        for (name, v) in state.parameters { file.add(name, v.value) }
        for (name, s) in state.statistics {
            file.add(name + ".running_mean", s.runningMean)
            file.add(name + ".running_var", s.runningVar)
            file.add(name + ".num_batches_tracked", Tensor(shape: [], repeating: Float(s.batchesTracked)))
        }
        file.add("alphas_normal", network.alphasNormal.value)
        file.add("alphas_reduce", network.alphasReduce.value)
        for ((name, _), buffer) in zip(state.parameters, optimizer.momentumBuffers) {
            if let buffer { file.add("optimizer.momentum_buffer." + name, buffer) }
        }
        for (k, name) in ["alphas_normal", "alphas_reduce"].enumerated() {
            file.add("architect.exp_avg." + name, architect.optimizer.firstMoments[k])
            file.add("architect.exp_avg_sq." + name, architect.optimizer.secondMoments[k])
        }
        try file.write(to: directory.checkpoint)
        try writeCost()
    }

    private func restore(_ file: CheckpointFile) throws {
        guard file.metadata["kind"]?.string == "search" else { throw RunError("\(directory.checkpoint.path) is not a search checkpoint") }
        let state = network.state
        for (name, v) in state.parameters { v.value = try file.tensor(name, shape: v.shape) }
        for (name, s) in state.statistics {
            s.runningMean = try file.tensor(name + ".running_mean", shape: s.runningMean.shape)
            s.runningVar = try file.tensor(name + ".running_var", shape: s.runningVar.shape)
            s.batchesTracked = Int(try file.tensor(name + ".num_batches_tracked", shape: []).scalars[0])
        }
        network.alphasNormal.value = try file.tensor("alphas_normal", shape: network.alphasNormal.shape)
        network.alphasReduce.value = try file.tensor("alphas_reduce", shape: network.alphasReduce.shape)
        for (i, (name, v)) in state.parameters.enumerated() where file.contains("optimizer.momentum_buffer." + name) {
            optimizer.momentumBuffers[i] = try file.tensor("optimizer.momentum_buffer." + name, shape: v.shape)
        }
        for (k, name) in ["alphas_normal", "alphas_reduce"].enumerated() {
            let shape = architect.optimizer.parameters[k].shape
            architect.optimizer.firstMoments[k] = try file.tensor("architect.exp_avg." + name, shape: shape)
            architect.optimizer.secondMoments[k] = try file.tensor("architect.exp_avg_sq." + name, shape: shape)
        }
        let m = file.metadata
        architect.optimizer.stepCount = m["adam_step"]?.int ?? 0
        epoch = m["epoch"]?.int ?? 0
        stepInEpoch = m["step"]?.int ?? 0
        epochLoss = m["epoch_loss"]?.double ?? 0
        epochArchLoss = m["epoch_arch_loss"]?.double ?? 0
        epochCorrect = m["epoch_correct"]?.int ?? 0
        epochSeen = m["epoch_seen"]?.int ?? 0
        metrics = m["metrics"]?.array ?? []
        alphaHistory = m["alphas"]?.array ?? []
        previousSeconds = m["seconds"]?.double ?? 0
        record("resumed from \(directory.checkpoint.path) at epoch \(epoch + 1) step \(stepInEpoch)")
    }

    // MARK: Helpers

    private var totalSeconds: Double { previousSeconds + Date().timeIntervalSince(startTime) }

    private func writeCost() throws {
        let seconds = totalSeconds
        try directory.writeJSON([
            "wall_seconds": .number(seconds), "ranks": .number(Double(comm.size)), "threads_per_rank": .number(Double(threads)),
            "core_seconds": .number(seconds * Double(comm.size * threads)), "core_hours": .number(seconds * Double(comm.size * threads) / 3600),
            "epochs_done": .number(Double(epoch)),
        ] as [String: JSONValue], to: directory.cost)
    }

    private func record(_ line: String) {
        guard comm.rank == 0 else { return }
        log(line)
        directory.appendLog(line)
    }

    private func softmaxRows(_ t: Tensor) throws -> JSONValue {
        let s = try Tape(recording: false).softmax(Variable(t)).value
        let k = t.shape[1]
        return .array((0..<t.shape[0]).map { r in .array((0..<k).map { .number(Double(s.scalars[r * k + $0])) }) })
    }

    /// A stream id for (kind, epoch, index): counter-based randomness.
    static func stream(_ kind: RandomStream, _ epoch: Int, _ index: Int) -> UInt64 {
        kind.rawValue << 48 | UInt64(epoch & 0xFFFFFF) << 24 | UInt64(index & 0xFFFFFF)
    }

    /// Averages gradients over ranks in one fused buffer (a no-op for one rank).
    static func averageGradients(_ vs: [Variable], _ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        var total = 0
        for v in vs { total += v.value.count }
        try comm.requireSameOnAllRanks(total, what: "fused gradient buffer length")
        var buffer = [Float](repeating: 0, count: total)
        var o = 0
        for v in vs {
            if let g = v.grad { for j in 0..<g.count { buffer[o + j] = g.scalars[j] } }
            o += v.value.count
        }
        try comm.allreduceMean(&buffer)
        o = 0
        for v in vs {
            var g = Tensor(shape: v.shape)
            for j in 0..<g.count { g.scalars[j] = buffer[o + j] }
            v.grad = g
            o += v.value.count
        }
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t / 60 % 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}
