import Distributed
import Kernels

/// PC-DARTS (reference yuhuixu1993/PC-DARTS `train_search.py`, `model_search.py`): the DARTS step
/// on a supernet whose edges see only 1/K of the channels (`PartialChannelMixedOp`), with edge
/// normalisation — betas per incoming edge, softmaxed over each node's inputs, scaling each
/// edge's output — trained with the alphas by the same Adam, and the architecture frozen during
/// a warm-up (15 epochs in the paper's setting). Derivation ranks edges by their strongest
/// non-`none` op weight times the edge weight.
///
/// Xu, Xie, Zhang, Chen, Qi, Tian, Xiong. PC-DARTS: Partial Channel Connections for
/// Memory-Efficient Architecture Search. ICLR 2020.
public final class PCDARTS: SearchMethod {
    public let network: SearchNetwork
    public let training: SupernetTraining
    public let partialChannels: Int
    public let secondOrder: Bool
    public let warmupEpochs: Int
    public let derivation: DerivationPolicy

    public init(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager) throws {
        let k = config.partialChannels
        let supernet = config.supernetConfig(inputShape: inputShape, classes: classes)
        // Every cell's C (C, 2C, 4C) must split into K parts.
        guard k >= 1, supernet.channels % k == 0 else {
            throw SearchConfigError("--partial-channels \(k) must divide --channels \(supernet.channels) (each edge's channels are split into K parts)")
        }
        network = try SearchNetwork(supernet, seed: config.seed, makeEdge: PartialChannelMixedOp.factory(partial: k),
                                    edgeNormalisation: true)
        network.activationFraction = 1 / Double(k)
        training = SupernetTraining(network: network, config: config, averager: averager)
        partialChannels = k
        secondOrder = config.order == 2
        warmupEpochs = config.warmupEpochs
        derivation = DerivationPolicy(space: network.config.space, steps: network.config.steps)
    }

    public func isWarmUp(epoch: Int) -> Bool { epoch < warmupEpochs }
}
