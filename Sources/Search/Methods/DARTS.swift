import Distributed
import Kernels

/// DARTS (reference `train_search.py`): per step an architecture update on a validation batch —
/// first order (the gradient at the current weights) or second order (at the weights after one
/// unrolled SGD step, with the finite-difference Hessian-vector product) — then a weight update
/// on a training batch. Full mixed ops on every edge, softmaxed alphas, the reference derivation.
///
/// Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019, section 2.
public final class DARTS: SearchMethod {
    /// The training's supernet (replaced when `--channel-schedule` widens it).
    public var network: SearchNetwork { training.network }
    public let training: SupernetTraining
    public let secondOrder: Bool
    public let warmupEpochs: Int
    public let derivation: DerivationPolicy

    public init(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager) throws {
        let dropout = config.opDropout.map { _ in OpDropout(seed: config.seed) }
        let network = try SearchNetwork(config.supernetConfig(inputShape: inputShape, classes: classes), seed: config.seed,
                                    makeEdge: OpDropoutEdge.factory(dropout))
        training = SupernetTraining(network: network, config: config, averager: averager, opDropout: dropout)
        secondOrder = config.order == 2
        warmupEpochs = config.warmupEpochs
        derivation = DerivationPolicy(space: network.config.space, steps: network.config.steps)
    }

    public func isWarmUp(epoch: Int) -> Bool { epoch < warmupEpochs }
}
