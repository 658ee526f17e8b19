import Kernels

/// Terms added to the validation loss that the architect differentiates (first and second order),
/// against DARTS' collapse onto parameter-free ops. Both act on the op logits (the [edges, K]
/// alphas of both cells; PC-DARTS' betas are left alone) and ramp up linearly with the epoch:
///
/// - beta-decay (β-DARTS): + lambda_t * mean over edges of logsumexp(alpha_edge), with
///   lambda_t = L * epoch / epochs (`--beta-regularization L`). Its gradient, lambda_t * softmax
///   over each row, pulls every logit down by its own weight, keeping the alphas small and the op
///   weights from saturating.
/// - entropy: - w_t * mean over edges of the entropy of softmax(alpha_edge), with
///   w_t = W * epoch / epochs (`--entropy-weight W`, the sign convention of the issue and of the
///   literature's "entropy weight"). The loss is minimised, so W < 0 penalises entropy: the op
///   weights sharpen towards one-hot (the derived discrete cell moves closer to the supernet that
///   was trained; the usual choice); W > 0 rewards entropy and keeps them flat.
///
/// `epoch` counts from 0, so the first epoch is unregularised and the last one uses (E-1)/E of
/// the full weight.
///
/// Ye, Li, Wang, Zhang, Xu. β-DARTS: Beta-Decay Regularization for Differentiable Architecture
/// Search. CVPR 2022, section 3.
public struct ArchitectureRegularizer: Equatable, Sendable {
    /// L: the final beta-decay weight (0: off).
    public var betaDecay: Float
    /// W: the final entropy weight (0: off; negative sharpens the op weights, positive flattens them).
    public var entropy: Float

    public init(betaDecay: Float = 0, entropy: Float = 0) {
        self.betaDecay = betaDecay
        self.entropy = entropy
    }

    /// The regularisers a configuration asks for.
    public init(_ config: SearchConfig) {
        self.init(betaDecay: config.betaRegularization ?? 0, entropy: config.entropyWeight ?? 0)
    }

    /// Whether any term is added.
    public var isEnabled: Bool { betaDecay != 0 || entropy != 0 }

    /// The share of the full weights that epoch `epoch` (from 0) of `epochs` uses: epoch / epochs.
    public static func ramp(epoch: Int, epochs: Int) -> Float {
        epochs > 0 ? Float(min(max(epoch, 0), epochs)) / Float(epochs) : 0
    }

    /// lambda_t = L * epoch / epochs.
    public func betaDecayWeight(epoch: Int, epochs: Int) -> Float { betaDecay * Self.ramp(epoch: epoch, epochs: epochs) }

    /// w_t = W * epoch / epochs.
    public func entropyWeight(epoch: Int, epochs: Int) -> Float { entropy * Self.ramp(epoch: epoch, epochs: epochs) }

    /// The regularisation term on `tape`: lambda_t * mean logsumexp - w_t * mean entropy over the
    /// rows of every [edges, K] parameter in `parameters` together; nil when both weights are 0
    /// at this epoch.
    public func term(_ parameters: [Variable], epoch: Int, epochs: Int, on tape: Tape) throws -> Variable? {
        let rows = parameters.filter { $0.shape.count == 2 }
        let count = rows.reduce(0) { $0 + $1.shape[0] }
        guard count > 0 else { return nil }
        var terms: [Variable] = []
        let lambda = betaDecayWeight(epoch: epoch, epochs: epochs)
        if lambda != 0 {
            terms += try rows.map { tape.scale(tape.sumAll(try tape.logSumExp($0)), lambda / Float(count)) }
        }
        let w = entropyWeight(epoch: epoch, epochs: epochs)
        if w != 0 {
            terms += try rows.map { tape.scale(tape.sumAll(try tape.softmaxEntropy($0)), -w / Float(count)) }
        }
        return terms.isEmpty ? nil : try tape.sum(terms)
    }
}
