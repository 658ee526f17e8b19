import Distributed
import Kernels

/// SDARTS-RS (reference xiangning-chen/SmoothDARTS, `--perturb_alpha random`): DARTS whose weight
/// step sees randomly perturbed op weights, so the supernet's weights are trained for a
/// neighbourhood of the architecture rather than one point and the validation loss becomes smooth
/// in the alphas. In each weight step uniform noise in [-eps, eps] is added to every softmaxed op
/// weight, each value is clipped to [0, 1] and each edge's row renormalised to sum 1; eps rises
/// linearly over the epochs (`PerturbationSchedule`, 0.03 to 0.3 by default). The architecture
/// step and every evaluation see the clean weights; derivation is DARTS's.
///
/// The noise of step s of epoch e comes from the run seed's `perturbation` stream (e, 2s) for
/// the normal cell and (e, 2s + 1) for the reduction cell: the same on every rank, and the same
/// after a resume.
///
/// Chen, Hsieh. Stabilizing Differentiable Architecture Search via Perturbation-based
/// Regularization. ICML 2020, section 4 (random smoothing).
public final class SDARTS: SearchMethod {
    /// The training's supernet (replaced when `--channel-schedule` widens it).
    public var network: SearchNetwork { training.network }
    public let training: SupernetTraining
    public let secondOrder: Bool
    public let warmupEpochs: Int
    public let derivation: DerivationPolicy
    public let epochs: Int
    public let seed: UInt64
    public let schedule: PerturbationSchedule

    public init(_ config: SearchConfig, inputShape: [Int], classes: Int, averager: GradientAverager) throws {
        let dropout = config.opDropout.map { _ in OpDropout(seed: config.seed) }
        let network = try SearchNetwork(config.supernetConfig(inputShape: inputShape, classes: classes), seed: config.seed,
                                    makeEdge: OpDropoutEdge.factory(dropout))
        training = SupernetTraining(network: network, config: config, averager: averager, opDropout: dropout)
        secondOrder = config.order == 2
        warmupEpochs = config.warmupEpochs
        derivation = DerivationPolicy(space: network.config.space, steps: network.config.steps)
        epochs = config.epochs
        seed = config.seed
        schedule = config.sdartsEpsilon ?? .sdartsDefault
    }

    public func isWarmUp(epoch: Int) -> Bool { epoch < warmupEpochs }

    /// The DARTS step, the weight step on perturbed op weights.
    public func step(train: Batch, validation: Batch, epoch: Int, learningRate: Float,
                     control: StepControl = StepControl()) throws -> StepResult {
        let transform = perturbation(epoch: epoch, step: control.step)
        return try dartsStep(train: train, validation: validation, epoch: epoch, learningRate: learningRate, control: control) { weightStep in
            network.opWeightTransform = transform
            defer { network.opWeightTransform = nil }
            return try weightStep()
        }
    }

    /// The op-weight transform of step `step` of epoch `epoch`: a pure function of the seed, the
    /// epoch, the step and the cell type. The result is a constant (no gradient to the alphas,
    /// which the weight step holds fixed anyway).
    public func perturbation(epoch: Int, step: Int) -> (Variable, Bool, Tape) throws -> Variable {
        let (seed, epsilon) = (seed, schedule.epsilon(epoch: epoch, epochs: epochs))
        return { ops, reduction, _ in
            var g = RandomGenerator(seed: seed, streamID: streamID(.perturbation, epoch, 2 * step + (reduction ? 1 : 0)))
            return Variable(Self.perturb(ops.value, epsilon: epsilon, generator: &g))
        }
    }

    /// Rows of op weights w: [R, K] with uniform noise in [-epsilon, epsilon) added, clipped to
    /// [0, 1] and each row divided by its sum. A row clipped to all zeros puts weight 1 on its
    /// largest noisy entry (as the reference does).
    public static func perturb(_ w: Tensor, epsilon: Float, generator g: inout RandomGenerator) -> Tensor {
        precondition(w.shape.count == 2, "perturb: op weights must be [edges, K], got \(w.shape)")
        let (rows, k) = (w.shape[0], w.shape[1])
        var out = w
        for r in 0..<rows {
            var row = (0..<k).map { w.scalars[r * k + $0] + g.uniform(-epsilon, epsilon) }
            let largest = row.indices.max { row[$0] < row[$1] } ?? 0
            for i in row.indices { row[i] = min(1, max(0, row[i])) }
            var sum = row.reduce(0, +)
            if sum == 0 { row[largest] = 1; sum = 1 }
            for i in row.indices { out.scalars[r * k + i] = row[i] / sum }
        }
        return out
    }
}

/// A value that rises (or falls) linearly over the epochs: start at epoch 0, start + (end -
/// start) * e / epochs at epoch e (the reference's schedule, which reaches `end` only after the
/// last epoch). Stored as [start, end]; written `start:end` on the command line.
public struct PerturbationSchedule: Codable, Equatable, Sendable {
    public var start: Float
    public var end: Float

    public init(start: Float, end: Float) {
        self.start = start
        self.end = end
    }

    /// SDARTS-RS: eps from 0.03 to 0.3.
    public static let sdartsDefault = PerturbationSchedule(start: 0.03, end: 0.3)

    public func epsilon(epoch: Int, epochs: Int) -> Float {
        start + (end - start) * Float(epoch) / Float(max(epochs, 1))
    }

    /// "start:end", or "end" alone (start 0.03, the reference's).
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Float(String($0)) }
        switch parts.count {
        case 1: guard let e = parts[0] else { return nil }; self.init(start: Self.sdartsDefault.start, end: e)
        case 2: guard let s = parts[0], let e = parts[1] else { return nil }; self.init(start: s, end: e)
        default: return nil
        }
    }

    public init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        self.init(start: try c.decode(Float.self), end: try c.decode(Float.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(start)
        try c.encode(end)
    }
}
