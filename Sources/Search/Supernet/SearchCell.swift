import Kernels

/// A cell of the DARTS search network (reference `model_search.Cell`): two preprocessed inputs,
/// `steps` intermediate nodes each summing mixed edges from all earlier states, output the
/// concatenation of the intermediate nodes.
public final class SearchCell: Layer {
    public let reduction: Bool
    public let steps: Int
    public let preprocess0: Layer
    public let preprocess1: Layer
    /// The mixed edges in reference order: node 0's two inputs, node 1's three, ... (14 for 4 steps).
    public let edges: [MixedOp]

    public init(steps: Int, cPrevPrev: Int, cPrev: Int, c: Int, reduction: Bool, reductionPrev: Bool,
                primitives: [Primitive], generator: inout RandomGenerator) {
        self.reduction = reduction
        self.steps = steps
        preprocess0 = reductionPrev
            ? FactorizedReduce(cPrevPrev, c, affine: false, generator: &generator)
            : ReLUConvBN(cPrevPrev, c, kernel: 1, stride: 1, padding: 0, affine: false, generator: &generator)
        preprocess1 = ReLUConvBN(cPrev, c, kernel: 1, stride: 1, padding: 0, affine: false, generator: &generator)
        var edges: [MixedOp] = []
        for i in 0..<steps {
            for j in 0..<(2 + i) {
                edges.append(MixedOp(channels: c, stride: reduction && j < 2 ? 2 : 1, primitives: primitives, generator: &generator))
            }
        }
        self.edges = edges
    }

    /// The number of mixed edges for `steps` nodes: 2 + 3 + ... + (steps + 1).
    public static func edgeCount(steps: Int) -> Int { (0..<steps).reduce(0) { $0 + 2 + $1 } }

    /// s0, s1: the outputs of the two previous cells; weights: softmax(alphas) [edges, K].
    public func forward(_ s0: Variable, _ s1: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        var states = [try preprocess0.forward(s0, ctx), try preprocess1.forward(s1, ctx)]
        var offset = 0
        for _ in 0..<steps {
            var terms: [Variable] = []
            for (j, h) in states.enumerated() {
                terms.append(try edges[offset + j].forward(h, weights: try t.row(weights, offset + j), ctx))
            }
            offset += states.count
            states.append(try t.sum(terms))
        }
        return try t.concatChannels(Array(states.suffix(steps)))
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "SearchCell", "a cell needs two inputs and architecture weights")
    }

    public func collect(prefix: String, into state: inout NamedState) {
        preprocess0.collect(prefix: qualified(prefix, "preprocess0"), into: &state)
        preprocess1.collect(prefix: qualified(prefix, "preprocess1"), into: &state)
        for (e, op) in edges.enumerated() { op.collect(prefix: qualified(prefix, "_ops.\(e)"), into: &state) }
    }
}
