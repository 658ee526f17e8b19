import Kernels

/// A PC-DARTS mixed edge (reference PC-DARTS `model_search.MixedOp`): only the first C/K channels
/// of the input go through the candidate ops; the other channels bypass them (through a 2x2
/// stride-2 max pool on reduction edges, so the sizes match), are concatenated after the ops'
/// weighted sum, and a channel shuffle with K groups mixes the two parts for the next edge.
///
/// The ops only ever see the C/K selected channels: they are built for C/K channels and run on
/// that slice. (The seed text this project follows describes the op as "mix, then mask" — running
/// the ops on all channels and masking afterwards. That is wrong: it costs the full compute and
/// memory, which is what PC-DARTS exists to save, and it is not what the reference computes.)
///
/// Xu, Xie, Zhang, Chen, Qi, Tian, Xiong. PC-DARTS: Partial Channel Connections for
/// Memory-Efficient Architecture Search. ICLR 2020, section 3.2.
public final class PartialChannelMixedOp: MixedEdge {
    /// K: 1/K of the channels go through the ops.
    public let partial: Int
    public let stride: Int
    /// The mixed op on C/K channels (state-dict names as the reference: `_ops.k...`).
    public let mixed: MixedOp

    public var primitives: [Primitive] { mixed.primitives }

    public init(channels c: Int, stride: Int, primitives: [Primitive], partial k: Int, generator: inout RandomGenerator) {
        precondition(k >= 1 && c % k == 0, "partial channels: \(c) channels are not divisible by K=\(k)")
        partial = k
        self.stride = stride
        mixed = MixedOp(channels: c / k, stride: stride, primitives: primitives, generator: &generator)
    }

    /// The PC-DARTS edge factory for K.
    public static func factory(partial k: Int) -> EdgeFactory {
        { spec, g in PartialChannelMixedOp(channels: spec.channels, stride: spec.stride, primitives: spec.primitives, partial: k, generator: &g) }
    }

    /// shuffle(concat(sum_k w_k op_k(x[:, :C/K]), bypass(x[:, C/K:]))).
    public func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        let c = x.shape[1]
        guard c % partial == 0 else {
            throw KernelError.shapeMismatch(op: "PartialChannelMixedOp", "input \(x.shape): \(c) channels not divisible by K=\(partial)")
        }
        guard partial > 1 else { return try mixed.forward(x, weights: weights, ctx) }
        let selected = try t.sliceChannels(x, 0..<(c / partial))
        let mixedOut = try mixed.forward(selected, weights: weights, ctx)
        // The bypass channels are read where they lie (in x, or in x pooled as a whole: a 2x2
        // pool is per channel, and pooling all C channels costs less memory than a copy of 3/4 of
        // them), and concatenation and shuffle are one op, so no slice of them is kept.
        let bypass = stride == 2 ? try t.maxPool2d(x, kernel: 2, stride: 2, padding: 0) : x
        return try t.concatShuffled([(mixedOut, 0..<mixedOut.shape[1]), (bypass, (c / partial)..<c)], groups: partial)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "PartialChannelMixedOp", "a mixed edge needs its architecture weights")
    }

    public func collect(prefix: String, into state: inout NamedState) { mixed.collect(prefix: prefix, into: &state) }
}
