import Kernels

/// A DARTS mixed edge whose op outputs go through `OpDropout` in the weight step (reference
/// chenxin061/pdarts `model_search.MixedOp`: the stride-1 `Identity` followed by `nn.Dropout`;
/// `--op-dropout` does the same to any op). State-dict names are `MixedOp`'s, so checkpoints of
/// runs with and without dropout are interchangeable.
public final class OpDropoutEdge: MixedEdge {
    public let mixed: MixedOp
    public let dropout: OpDropout
    /// The edge's stream slot (cell x 256 + edge) and the index of its identity op, if any.
    public let slot: Int
    public let identityIndex: Int?

    public var primitives: [Primitive] { mixed.primitives }

    public init(_ mixed: MixedOp, slot: Int, dropout: OpDropout) {
        self.mixed = mixed
        self.slot = slot
        self.dropout = dropout
        identityIndex = mixed.ops.firstIndex { $0 is Identity }
    }

    /// A `MixedOp` with dropout on its op paths; with `dropout` nil, the plain `MixedOp`.
    public static func factory(_ dropout: OpDropout?) -> EdgeFactory {
        guard let dropout else { return MixedOp.factory }
        return { spec, g in
            OpDropoutEdge(MixedOp(channels: spec.channels, stride: spec.stride, primitives: spec.primitives, generator: &g),
                          slot: spec.cell << 8 | spec.edge, dropout: dropout)
        }
    }

    /// sum_k weights[k] * op_k(x), with op_k(x) replaced by dropout(op_k(x)) for the ops that
    /// have a rate while the dropout is active (training mode only).
    /// x: [N, C, H, W] -> [N, C, H/stride, W/stride]; weights: [K].
    public func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable {
        let ops = mixed.ops
        let rates = ops.indices.map { dropout.rate(mixed.primitives[$0], op: ops[$0]) }
        guard ctx.training, rates.contains(where: { $0 > 0 }) else { return try mixed.forward(x, weights: weights, ctx) }
        // One generator per edge and pass, drawn in op order: the same masks when recomputed.
        var g = dropout.generator(slot: slot)
        return try mixed.forward(x, weights: weights, ctx) { k, y in
            rates[k] > 0 ? try ctx.tape.dropout(y, p: rates[k], generator: &g) : y
        }
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "OpDropoutEdge", "a mixed edge needs its architecture weights")
    }

    public func collect(prefix: String, into state: inout NamedState) { mixed.collect(prefix: prefix, into: &state) }
}

/// P-DARTS's name for the edge.
public typealias SkipDropoutEdge = OpDropoutEdge
