import Kernels

/// The coefficient of the DARTS- auxiliary skip connections, shared by every edge of a supernet
/// and set by the method before each step.
public final class AuxiliarySkipCoefficient {
    /// beta: the weight of the auxiliary skip in every edge's output.
    public var beta: Float

    public init(beta: Float = 1) { self.beta = beta }
}

/// A DARTS- edge (reference Meituan-AutoML/DARTS- `model_search.MixedOp` with an auxiliary skip):
/// a mixed edge plus an auxiliary skip connection outside the softmax, weighted by a coefficient
/// beta that the method decays to 0 over the search:
///
///     y = edge(x, weights) + beta * skip(x)
///
/// skip is the identity on stride-1 edges and a non-affine FactorizedReduce on stride-2 edges
/// (its weights are trained with the other weights; state-dict names `<edge>.auxiliary_skip.*`).
/// The skip has no architecture weight, so it never appears in the genotype.
///
/// Chu, Wang, Zhang, Zhang, Wei, Yan. DARTS-: Robustly Stepping out of Performance Collapse
/// Without Indicators. ICLR 2021, section 3.
public final class AuxiliarySkipEdge: MixedEdge {
    /// The wrapped mixed edge (its state-dict names are unchanged: `<edge>._ops.k...`).
    public let edge: MixedEdge
    /// nil on stride-1 edges (identity); FactorizedReduce on stride-2 edges.
    public let reduce: FactorizedReduce?
    public let coefficient: AuxiliarySkipCoefficient

    public var primitives: [Primitive] { edge.primitives }

    public init(_ edge: MixedEdge, channels c: Int, stride: Int, coefficient: AuxiliarySkipCoefficient,
                generator: inout RandomGenerator) {
        self.edge = edge
        self.coefficient = coefficient
        reduce = stride == 2 ? FactorizedReduce(c, c, affine: false, generator: &generator) : nil
    }

    /// The DARTS- edge factory: `base`'s edge (default DARTS `MixedOp`) with an auxiliary skip.
    /// The skip's weights are drawn after the wrapped edge's.
    public static func factory(wrapping base: @escaping EdgeFactory = MixedOp.factory,
                               coefficient: AuxiliarySkipCoefficient) -> EdgeFactory {
        { spec, g in
            let inner = base(spec, &g)
            return AuxiliarySkipEdge(inner, channels: spec.channels, stride: spec.stride, coefficient: coefficient, generator: &g)
        }
    }

    /// edge(x, weights) + beta * skip(x); exactly edge(x, weights) when beta is 0 (the skip is
    /// then not computed). x: [N, C, H, W] -> [N, C, H/stride, W/stride].
    public func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable {
        let mixed = try edge.forward(x, weights: weights, ctx)
        let beta = coefficient.beta
        guard beta != 0 else { return mixed }
        let skip = try reduce?.forward(x, ctx) ?? x
        return try ctx.tape.add(mixed, ctx.tape.scale(skip, beta))
    }

    /// The wrapped edge's op `op` alone, without the auxiliary skip: the edge as the genotype
    /// has it (the skip is no architecture choice and is gone, beta 0, when the search ends), so
    /// a genotype can be scored on a DARTS- supernet single-path (`nas-mpi fidelity`).
    public func forward(_ x: Variable, op: Int, _ ctx: ForwardContext) throws -> Variable {
        try edge.forward(x, op: op, ctx)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "AuxiliarySkipEdge", "a mixed edge needs its architecture weights")
    }

    public func collect(prefix: String, into state: inout NamedState) {
        edge.collect(prefix: prefix, into: &state)
        reduce?.collect(prefix: qualified(prefix, "auxiliary_skip"), into: &state)
    }
}
