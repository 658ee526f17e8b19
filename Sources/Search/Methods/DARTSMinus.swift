import Distributed
import Kernels

/// DARTS- (reference Meituan-AutoML/DARTS-): DARTS with an auxiliary skip connection on every
/// mixed edge, outside the softmax (`AuxiliarySkipEdge`), whose coefficient beta decays linearly
/// from 1 to 0 over the search, so that the skip op inside the softmax no longer has to win to
/// let gradients through and the collapse onto skip connections is avoided. The step is the
/// DARTS step with beta set first; the genotype is derived from the alphas as in DARTS (the
/// auxiliary skip has no alpha and never appears in it).
///
/// beta is set per epoch: beta(e) = 1 - e / epochs for epoch e = 0, 1, ..., epochs - 1 (the last
/// epoch trains with 1 / epochs), as the reference's linear decay scheduler.
///
/// Chu, Wang, Zhang, Zhang, Wei, Yan. DARTS-: Robustly Stepping out of Performance Collapse
/// Without Indicators. ICLR 2021.
public final class DARTSMinus: SearchMethod {
    /// The training's supernet (replaced when `--channel-schedule` widens it).
    public var network: SearchNetwork { training.network }
    public let training: SupernetTraining
    public let secondOrder: Bool
    public let warmupEpochs: Int
    public let derivation: DerivationPolicy
    public let epochs: Int
    /// The beta every edge reads.
    public let coefficient: AuxiliarySkipCoefficient

    public init(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager) throws {
        coefficient = AuxiliarySkipCoefficient(beta: 1)
        let dropout = config.opDropout.map { _ in OpDropout(seed: config.seed) }
        let network = try SearchNetwork(config.supernetConfig(inputShape: inputShape, classes: classes), seed: config.seed,
                                    makeEdge: AuxiliarySkipEdge.factory(wrapping: OpDropoutEdge.factory(dropout), coefficient: coefficient))
        training = SupernetTraining(network: network, config: config, averager: averager, opDropout: dropout)
        secondOrder = config.order == 2
        warmupEpochs = config.warmupEpochs
        epochs = config.epochs
        derivation = DerivationPolicy(space: network.config.space, steps: network.config.steps)
    }

    /// beta(e) = 1 - e / epochs, clamped to [0, 1].
    public static func beta(epoch: Int, epochs: Int) -> Float {
        min(1, max(0, 1 - Float(epoch) / Float(max(epochs, 1))))
    }

    public func isWarmUp(epoch: Int) -> Bool { epoch < warmupEpochs }

    /// Sets beta for `epoch`, then the DARTS step (architecture and weights both see it).
    public func step(train: Batch, validation: Batch, epoch: Int, learningRate: Float,
                     control: StepControl = StepControl()) throws -> StepResult {
        coefficient.beta = Self.beta(epoch: epoch, epochs: epochs)
        return try dartsStep(train: train, validation: validation, epoch: epoch, learningRate: learningRate, control: control)
    }

    /// The state of every method plus beta (so a run resumed before its next step, for example
    /// inside an epoch's validation pass, evaluates with the beta it had).
    public func addState(to file: inout CheckpointFile) {
        training.addState(to: &file)
        file.metadata["auxiliary_skip_beta"] = .number(Double(coefficient.beta))
    }

    public func restoreState(from file: CheckpointFile) throws {
        try training.restoreState(from: file)
        restoreBeta(from: file)
    }

    /// Weights, buffers, alphas and beta (from a checkpoint; a file without it keeps beta 1).
    public func restoreForEvaluation(from file: CheckpointFile) throws {
        try training.restoreWidth(from: file)
        try network.state.restore(from: file)
        for v in network.architecture { v.value = try file.tensor(v.name, shape: v.shape) }
        restoreBeta(from: file)
    }

    private func restoreBeta(from file: CheckpointFile) {
        if let beta = file.metadata["auxiliary_skip_beta"]?.double { coefficient.beta = Float(beta) }
    }
}
