import Foundation
import Kernels

/// The dropout that P-DARTS puts on the stride-1 skip connections of a supernet, shared by every
/// edge and set by the method around each weight step (never in the architecture step or in
/// evaluation).
///
/// The mask of edge `slot` in step `step` of epoch `epoch` comes from its own counter-based
/// stream of the run seed, so it is the same on every rank, when a cell's activations are
/// recomputed in backward, and after a resume.
public final class SkipDropout {
    public let seed: UInt64
    /// The drop probability while active, in [0, 1).
    public private(set) var rate: Float = 0
    public private(set) var epoch = 0
    public private(set) var step = 0
    /// Whether the current forward pass drops (only inside `during`).
    public private(set) var active = false

    public init(seed: UInt64) { self.seed = seed }

    /// Runs `body` (a weight step) with dropout at `rate` for step `step` of epoch `epoch`.
    public func during<T>(rate: Float, epoch: Int, step: Int, _ body: () throws -> T) rethrows -> T {
        (self.rate, self.epoch, self.step, active) = (rate, epoch, step, rate > 0)
        defer { active = false }
        return try body()
    }

    /// The generator of one edge's mask in the current step: stream kind (8 bits), epoch (16),
    /// step (24) and edge slot (16).
    func generator(slot: Int) -> RandomGenerator {
        let id = RandomStream.skipDropout.rawValue << 56 | UInt64(epoch & 0xFFFF) << 40 | UInt64(step & 0xFF_FFFF) << 16
            | UInt64(slot & 0xFFFF)
        return RandomGenerator(seed: seed, streamID: id)
    }

    /// P-DARTS's schedule of the rate in epoch `e` (from 0) of a stage of `epochs` epochs whose
    /// first `warmUp` train the weights only, from the stage's initial rate `p`: p (E - e - 1) / E
    /// during the warm-up, then p exp(-0.2 (e - warmUp)) (reference `train_search.py`).
    public static func rate(initial p: Float, epochInStage e: Int, stageEpochs E: Int, warmUp: Int) -> Float {
        if e < warmUp { return p * Float(E - e - 1) / Float(max(E, 1)) }
        return p * Float(exp(-0.2 * Double(e - warmUp)))
    }
}

/// A DARTS mixed edge whose stride-1 skip connection (the identity) goes through `SkipDropout`
/// in the weight step (reference chenxin061/pdarts `model_search.MixedOp`: `Identity` followed
/// by `nn.Dropout`). State-dict names are `MixedOp`'s; stride-2 skips (FactorizedReduce) and
/// every other op are unchanged.
public final class SkipDropoutEdge: MixedEdge {
    public let mixed: MixedOp
    public let dropout: SkipDropout
    /// The edge's stream slot (cell x 256 + edge) and the index of its identity op, if any.
    public let slot: Int
    public let identityIndex: Int?

    public var primitives: [Primitive] { mixed.primitives }

    public init(_ mixed: MixedOp, slot: Int, dropout: SkipDropout) {
        self.mixed = mixed
        self.slot = slot
        self.dropout = dropout
        identityIndex = mixed.ops.firstIndex { $0 is Identity }
    }

    /// The P-DARTS edge factory: a `MixedOp` with dropout on its stride-1 skip connection.
    public static func factory(_ dropout: SkipDropout) -> EdgeFactory {
        { spec, g in
            SkipDropoutEdge(MixedOp(channels: spec.channels, stride: spec.stride, primitives: spec.primitives, generator: &g),
                            slot: spec.cell << 8 | spec.edge, dropout: dropout)
        }
    }

    /// sum_k weights[k] * op_k(x), with op_skip(x) = dropout(x) while the dropout is active.
    /// x: [N, C, H, W] -> [N, C, H/stride, W/stride]; weights: [K].
    public func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable {
        guard let identityIndex, ctx.training, dropout.active else { return try mixed.forward(x, weights: weights, ctx) }
        return try mixed.forward(x, weights: weights, ctx) { k in
            guard k == identityIndex else { return nil }
            var g = dropout.generator(slot: slot)
            return try ctx.tape.dropout(x, p: dropout.rate, generator: &g)
        }
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "SkipDropoutEdge", "a mixed edge needs its architecture weights")
    }

    public func collect(prefix: String, into state: inout NamedState) { mixed.collect(prefix: prefix, into: &state) }
}
