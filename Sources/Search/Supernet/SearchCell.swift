import Kernels

/// A cell of the DARTS search network (reference `model_search.Cell`): two preprocessed inputs,
/// `steps` intermediate nodes each summing mixed edges from all earlier states, output the
/// concatenation of the intermediate nodes. The edges come from an `EdgeFactory`, so a method
/// chooses its own mixed edge.
public final class SearchCell: Layer {
    public let reduction: Bool
    public let steps: Int
    public let preprocess0: Layer
    public let preprocess1: Layer
    /// The mixed edges in reference order: node 0's two inputs, node 1's three, ... (14 for 4 steps).
    public let edges: [MixedEdge]

    /// - Parameters:
    ///   - index: the cell's position in the network (passed on to the edge factory).
    ///   - space: each edge's candidate ops.
    public init(index: Int = 0, steps: Int, cPrevPrev: Int, cPrev: Int, c: Int, reduction: Bool, reductionPrev: Bool,
                space: [[Primitive]], makeEdge: EdgeFactory = MixedOp.factory, generator: inout RandomGenerator) {
        precondition(space.count == Self.edgeCount(steps: steps), "a cell of \(steps) nodes has \(Self.edgeCount(steps: steps)) edges, got \(space.count) op lists")
        self.reduction = reduction
        self.steps = steps
        preprocess0 = reductionPrev
            ? FactorizedReduce(cPrevPrev, c, affine: false, generator: &generator)
            : ReLUConvBN(cPrevPrev, c, kernel: 1, stride: 1, padding: 0, affine: false, generator: &generator)
        preprocess1 = ReLUConvBN(cPrev, c, kernel: 1, stride: 1, padding: 0, affine: false, generator: &generator)
        var edges: [MixedEdge] = []
        for i in 0..<steps {
            for j in 0..<(2 + i) {
                let spec = EdgeSpec(cell: index, edge: edges.count, reduction: reduction, channels: c,
                                    stride: reduction && j < 2 ? 2 : 1, primitives: space[edges.count])
                edges.append(makeEdge(spec, &generator))
            }
        }
        self.edges = edges
    }

    /// The number of mixed edges for `steps` nodes: 2 + 3 + ... + (steps + 1).
    public static func edgeCount(steps: Int) -> Int { (0..<steps).reduce(0) { $0 + 2 + $1 } }

    /// The incoming-edge counts of the nodes (2, 3, 4, 5 for 4 steps): PC-DARTS's beta segments.
    public static func nodeSegments(steps: Int) -> [Int] { (0..<steps).map { $0 + 2 } }

    /// s0, s1: the outputs of the two previous cells; weights: the cell's op weights [edges, K] and
    /// optional edge weights [edges], which scale each edge's output in its node's sum.
    public func forward(_ s0: Variable, _ s1: Variable, weights: CellWeights, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        var states = [try preprocess0.forward(s0, ctx), try preprocess1.forward(s1, ctx)]
        var offset = 0
        for _ in 0..<steps {
            var terms: [Variable] = []
            for (j, h) in states.enumerated() {
                terms.append(try edges[offset + j].forward(h, weights: try t.row(weights.ops, offset + j), ctx))
            }
            if let edgeWeights = weights.edges {
                states.append(try t.weightedSum(terms, weights: edgeWeights, indices: Array(offset..<(offset + terms.count))))
            } else {
                states.append(try t.sum(terms))
            }
            // An edge's output is read by its node's sum alone; a plain sum's backward reads no value
            // (the edge weights' gradient does, and keeps them).
            for e in terms where !states.contains(where: { $0 === e }) { t.release(e) }
            offset += terms.count
        }
        let out = try t.concatChannels(Array(states.suffix(steps)))
        // The last node is read by the concatenation only, whose backward reads no value: not kept
        // (the other states are read by their edges' backward and stay).
        for s in states { t.release(s) }
        return out
    }

    /// The cell on one discrete architecture: each node sums the outputs of its chosen edges'
    /// single ops (`path[e]`: the op index of edge e, nil: the edge is off); no other op, and no
    /// preprocessing of a cell input that no chosen edge reads, is computed.
    /// s0, s1: the outputs of the two previous cells -> [N, steps * C, H', W'].
    public func forward(_ s0: Variable, _ s1: Variable, path: [Int?], _ ctx: ForwardContext) throws -> Variable {
        precondition(path.count == edges.count, "a path of a \(steps)-node cell has \(edges.count) edges, got \(path.count)")
        let t = ctx.tape
        let reads = Set(path.indices.filter { path[$0] != nil }.map { self.input(ofEdge: $0) })
        var states: [Variable?] = [reads.contains(0) ? try preprocess0.forward(s0, ctx) : nil,
                                   reads.contains(1) ? try preprocess1.forward(s1, ctx) : nil]
        var offset = 0
        for node in 0..<steps {
            var terms: [Variable] = []
            for j in 0..<(2 + node) {
                guard let op = path[offset + j] else { continue }
                guard let h = states[j] else { preconditionFailure("input \(j) was not computed") }
                terms.append(try edges[offset + j].forward(h, op: op, ctx))
            }
            guard !terms.isEmpty else {
                throw KernelError.invalidArgument(op: "SearchCell", "node \(node + 2) has no input on the path")
            }
            states.append(terms.count == 1 ? terms[0] : try t.sum(terms))
            offset += 2 + node
        }
        return try t.concatChannels(states.suffix(steps).map { $0! })
    }

    /// The state (0, 1: cell inputs; 2 + i: node i) that edge `e` reads.
    public func input(ofEdge e: Int) -> Int {
        var offset = 0
        for node in 0..<steps {
            if e < offset + 2 + node { return e - offset }
            offset += 2 + node
        }
        preconditionFailure("edge \(e) of a \(steps)-node cell")
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
