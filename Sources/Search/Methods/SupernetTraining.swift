import Distributed
import Foundation
import Kernels

/// The optimisation machinery every supernet method shares: SGD on the weights (cosine-annealed
/// learning rate, gradient clipping), the architect's Adam on the architecture parameters, the
/// fused gradient allreduce and synchronised BatchNorm. Methods compose their step from
/// `architectureStep` and `weightStep`.
public final class SupernetTraining {
    /// The supernet, and its optimisers; all three are replaced when `--channel-schedule` widens it.
    public private(set) var network: SearchNetwork
    public private(set) var optimizer: SGD
    public private(set) var architect: Architect
    public let averager: GradientAverager
    /// Synchronised BatchNorm statistics (nil: per-rank statistics).
    public let statisticsReducer: StatisticsReducer?
    public let gradClip: Float
    /// Clip the architecture gradients to this norm before Adam (nil: no clipping).
    public var architectureGradClip: Float?
    /// Clip each alpha row's (edge's) gradient to this norm before the global clip (nil: none).
    public var architectureEdgeGradClip: Float?
    /// Terms added to the validation loss the architect differentiates (beta-decay, entropy).
    public var regularizer: ArchitectureRegularizer
    /// The epoch in progress (from 0) of `epochs`: the regularisers' ramp (set by `Searcher.beginEpoch`).
    public var epoch = 0, epochs: Int
    /// `--op-dropout`: the dropout the network's edges read (nil: none) and its rates per op, which
    /// `withOpDropout` turns on around the weight step.
    public let opDropout: OpDropout?
    public var opDropoutRates: [Primitive: Float]
    /// `--channel-schedule`: the supernet's width per epoch (nil: the width it was built with).
    public let channelSchedule: ChannelSchedule?

    /// - Parameter opDropout: the dropout object the network's edges were built with
    ///   (`OpDropoutEdge.factory`), for `--op-dropout`; its rates come from `config`.
    public init(network: SearchNetwork, config: SearchConfig, averager: GradientAverager, opDropout: OpDropout? = nil) {
        self.network = network
        self.averager = averager
        gradClip = config.gradClip
        optimizer = SGD(parameters: network.weights, learningRate: config.learningRate, momentum: config.momentum,
                        weightDecay: config.weightDecay)
        architect = Architect(model: network, learningRate: config.archLearningRate, weightDecay: config.archWeightDecay)
        statisticsReducer = config.syncBatchNorm && averager.comm.size > 1 ? averager.statisticsReducer : nil
        architectureGradClip = config.archGradClip
        architectureEdgeGradClip = config.archGradClipPerEdge
        regularizer = ArchitectureRegularizer(config)
        epochs = config.epochs
        self.opDropout = opDropout
        opDropoutRates = opDropout == nil ? [:] : config.opDropout?.resolved(over: network.config.primitives) ?? [:]
        channelSchedule = config.channelSchedule
        network.batchNormMode = config.bnMode ?? .running
        configureArchitect()
    }

    /// The architect's gradient allreduce, synchronised BatchNorm and regularisation terms.
    private func configureArchitect() {
        architect.reduceGradients = { [averager] vs in try averager.average(vs) }
        architect.statisticsReducer = statisticsReducer
        architect.regularization = { [unowned self] tape in
            try regularizer.term(network.architecture, epoch: epoch, epochs: epochs, on: tape)
        }
    }

    // MARK: Channel schedule

    /// Widens the supernet to the width `--channel-schedule` gives epoch `epoch` (nothing when it
    /// has that width already). Methods call it at the start of each step (`dartsStep`).
    public func followChannelSchedule(epoch: Int) throws {
        guard let channelSchedule else { return }
        try widen(to: channelSchedule.channels(at: epoch))
    }

    /// Replaces the supernet by its function-preserving widening to initial width `channels`
    /// (`SearchNetwork.widened(to:)`) and carries the optimisers over: the SGD momentum of every
    /// old weight at its new positions (zero for new entries), the architect's Adam state as it
    /// is (the alphas are the same variables). Nothing when the width is already `channels`.
    public func widen(to channels: Int) throws {
        guard channels != network.config.channels else { return }
        let (wide, widenings) = try network.widened(to: channels)
        wide.batchNormMode = network.batchNormMode
        let sgd = SGD(parameters: wide.weights, learningRate: optimizer.learningRate, momentum: optimizer.momentum,
                      weightDecay: optimizer.weightDecay)
        let position = Dictionary(uniqueKeysWithValues: sgd.parameters.enumerated().map { (ObjectIdentifier($0.element), $0.offset) })
        for w in widenings {
            guard let buffer = try optimizer.momentumBuffer(of: w.old), let i = position[ObjectIdentifier(w.new)] else { continue }
            sgd.momentumBuffers[i] = w.apply(buffer, onto: Tensor.zeros(like: w.new.value))
        }
        let adam = architect.optimizer
        let wideArchitect = Architect(model: wide, learningRate: adam.learningRate, beta1: adam.beta1, beta2: adam.beta2,
                                      weightDecay: adam.weightDecay)
        wideArchitect.optimizer.firstMoments = adam.firstMoments
        wideArchitect.optimizer.secondMoments = adam.secondMoments
        wideArchitect.optimizer.stepCount = adam.stepCount
        (network, optimizer, architect) = (wide, sgd, wideArchitect)
        configureArchitect()
    }

    /// Widens the supernet to the width of a checkpoint or exported file before its tensors are
    /// loaded: the `channels` metadata, or (a safetensors export) the stem's output channels.
    public func restoreWidth(from file: CheckpointFile) throws {
        guard channelSchedule != nil else { return }
        let multiplier = network.config.stemMultiplier
        let saved = file.metadata["channels"]?.int
            ?? file.tensors.first { $0.name == "stem.0.weight" }.map { $0.tensor.shape[0] / multiplier }
        guard let saved else { return }
        guard saved >= network.config.channels, channelSchedule?.widths.contains(saved) == true else {
            throw SearchConfigError("the file's supernet has C=\(saved), which --channel-schedule \(channelSchedule!) never reaches from C=\(network.config.channels)")
        }
        try widen(to: saved)
    }

    /// An architecture update (first or second order); returns the validation loss.
    public func architectureStep(train: Batch, validation: Batch, learningRate: Float, secondOrder: Bool) throws -> Float {
        let loss = try architect.computeGradient(train: train, validation: validation, eta: learningRate,
                                                 weightOptimizer: optimizer, secondOrder: secondOrder)
        guard loss.isFinite else { throw DivergenceError("the architecture's validation loss is \(loss)") }
        if let n = architectureEdgeGradClip { clipGradientRowNorms(network.architecture, maxNorm: n) }
        let norm = clipGradientNorm(network.architecture, maxNorm: architectureGradClip ?? .infinity)
        guard norm.isFinite else { throw DivergenceError("the architecture gradient's norm is \(norm)") }
        architect.optimizer.step()
        for v in network.architecture where !v.value.scalars.allSatisfy(\.isFinite) {
            throw DivergenceError("\(v.name) is no longer finite after the architecture step")
        }
        return loss
    }

    /// Runs `body` (the weight step of step `step` of epoch `epoch`) with `--op-dropout`'s rates on
    /// top of any dropout the method already turned on (P-DARTS's skip rate).
    public func withOpDropout<T>(epoch: Int, step: Int, _ body: () throws -> T) rethrows -> T {
        guard let opDropout, !opDropoutRates.isEmpty else { return try body() }
        return try opDropout.during(rates: opDropoutRates, epoch: epoch, step: step, body)
    }

    /// A weight update on a training batch with the architecture parameters held constant:
    /// forward, backward, allreduce, clipping, SGD. Returns the loss and the correct count.
    public func weightStep(_ batch: Batch, learningRate: Float) throws -> StepResult {
        optimizer.learningRate = learningRate
        let architecture = network.architecture
        architecture.forEach { $0.requiresGrad = false }
        defer { architecture.forEach { $0.requiresGrad = true } }
        let tape = Tape()
        let (loss, logits) = try network.loss(batch.images, batch.labels,
                                              ForwardContext(tape: tape, training: true, statisticsReducer: statisticsReducer))
        try tape.backward(loss)
        // Weights the forward pass did not reach (ops off a single path) have no gradient: they
        // stay out of the allreduce and the update on any number of ranks, as on one. Every
        // rank runs the same architecture, so every rank leaves out the same ones.
        return try optimizer.finishStep(optimizer.parameters.filter { $0.grad != nil }, loss: loss, logits: logits, labels: batch.labels,
                                        averager: averager, gradClip: gradClip, gradient: "weight gradient")
    }

    // MARK: State

    /// Weights and BatchNorm buffers (state-dict names), the architecture parameters and their
    /// Adam moments (by parameter name), the SGD momentum (by weight name).
    public func addState(to file: inout CheckpointFile) {
        let state = network.state
        state.add(to: &file)
        let adam = architect.optimizer
        for (k, v) in adam.parameters.enumerated() {
            file.add(v.name, v.value)
            file.add("architect.exp_avg." + v.name, adam.firstMoments[k])
            file.add("architect.exp_avg_sq." + v.name, adam.secondMoments[k])
        }
        file.metadata["adam_step"] = .number(Double(adam.stepCount))
        file.metadata["channels"] = .number(Double(network.config.channels))
        optimizer.addMomentum(to: &file, names: state.parameters.map(\.name))
    }

    /// A checkpoint of a narrower supernet (`--channel-schedule`) first widens this one to its width.
    public func restoreState(from file: CheckpointFile) throws {
        try restoreWidth(from: file)
        let state = network.state
        try state.restore(from: file)
        let adam = architect.optimizer
        for (k, v) in adam.parameters.enumerated() {
            v.value = try file.tensor(v.name, shape: v.shape)
            adam.firstMoments[k] = try file.tensor("architect.exp_avg." + v.name, shape: v.shape)
            adam.secondMoments[k] = try file.tensor("architect.exp_avg_sq." + v.name, shape: v.shape)
        }
        adam.stepCount = file.metadata["adam_step"]?.int ?? 0
        try optimizer.restoreMomentum(from: file, names: state.parameters.map(\.name))
    }
}
