import Kernels

/// The normalised architecture weights of one cell type, as derivation reads them.
public struct CellStrengths {
    /// [edges, K]: each edge's op weights (softmax of its alphas).
    public var ops: Tensor
    /// [edges]: each edge's weight (PC-DARTS: softmax of the betas over the node's inputs); nil: 1.
    public var edges: Tensor?

    public init(ops: Tensor, edges: Tensor? = nil) {
        self.ops = ops
        self.edges = edges
    }
}

/// How a genotype is read off the architecture weights (reference `Network.genotype`, with the
/// PC-DARTS and P-DARTS variants as options):
///
/// - an edge's strength is its strongest op weight other than `none`, times the edge's weight
///   when the method has edge weights (PC-DARTS);
/// - each node keeps its two strongest incoming edges (ties keep the lower input, as Python's
///   stable `sorted`), and on each the strongest op other than `none` (edge weights, being one
///   positive factor per edge, do not change which op that is);
/// - optionally (P-DARTS), the normal cell may hold at most `maxSkipConnections` skip connections:
///   while it holds more, the weakest chosen skip connection's weight is set below every other
///   and the cell is derived again (an edge whose only op besides `none` is that skip then loses
///   to its node's other edges; where it cannot, the cap is left unmet rather than looping).
public struct DerivationPolicy: Sendable {
    /// Each edge's candidate ops (the columns of its op weights).
    public var space: CellSearchSpace
    public var steps: Int
    /// At most this many skip_connect edges in the normal cell (nil: no cap).
    public var maxSkipConnections: Int?

    public init(space: CellSearchSpace, steps: Int, maxSkipConnections: Int? = nil) {
        self.space = space
        self.steps = steps
        self.maxSkipConnections = maxSkipConnections
    }

    /// The genotype; concat = all intermediate nodes.
    public func derive(normal: CellStrengths, reduce: CellStrengths) throws -> Genotype {
        let concat = Array(2..<(steps + 2))
        return try Genotype(normal: try cell(normal, space.normal, cap: maxSkipConnections), normalConcat: concat,
                            reduce: try cell(reduce, space.reduce, cap: nil), reduceConcat: concat)
    }

    private func cell(_ s: CellStrengths, _ space: [[Primitive]], cap: Int?) throws -> [Genotype.Edge] {
        let edgesTotal = SearchCell.edgeCount(steps: steps)
        let k = space.first?.count ?? 0
        guard space.count == edgesTotal, space.allSatisfy({ $0.count == k }), s.ops.shape == [edgesTotal, k] else {
            throw GenotypeError("op weights of shape \(s.ops.shape) do not fit \(steps) nodes and \(k) ops per edge (expected [\(edgesTotal), \(k)])")
        }
        if let e = s.edges, e.shape != [edgesTotal] {
            throw GenotypeError("edge weights of shape \(e.shape) do not fit \(edgesTotal) edges")
        }
        var weights = s.ops.scalars
        var removed = Set<Int>()
        while true {
            let gene = try parse(weights, s.edges?.scalars, space, k)
            guard let cap else { return gene }
            let skips = gene.enumerated().filter { $0.element.op == .skipConnect }
            if skips.count <= cap { return gene }
            // Zero the weakest chosen skip connection and derive again.
            let start = nodeStarts()
            let positions = skips.map { item -> Int in
                let edge = start[item.offset / 2] + item.element.input
                return edge * k + space[edge].firstIndex(of: .skipConnect)!
            }.filter { !removed.contains($0) }
            // Every chosen skip was removed already and is still chosen (its edge has no other op
            // than none, and its node no other edge): the cap cannot be met.
            guard let weakest = positions.min(by: { weights[$0] < weights[$1] }) else { return gene }
            // Below every op weight, so the edge takes its next op (or loses to the other edges).
            weights[weakest] = -1
            removed.insert(weakest)
        }
    }

    /// The index of each node's first incoming edge.
    private func nodeStarts() -> [Int] { (0..<steps).map { i in (0..<i).reduce(0) { $0 + 2 + $1 } } }

    private func parse(_ w: [Float], _ edgeWeights: [Float]?, _ space: [[Primitive]], _ k: Int) throws -> [Genotype.Edge] {
        func best(_ edge: Int) throws -> Int {
            let candidates = space[edge].indices.filter { space[edge][$0] != .none }
            guard var b = candidates.first else { throw GenotypeError("edge \(edge) has no op other than none") }
            for c in candidates where w[edge * k + c] > w[edge * k + b] { b = c }
            return b
        }
        var gene: [Genotype.Edge] = []
        var start = 0
        for i in 0..<steps {
            let n = i + 2
            let strength = try (0..<n).map { j -> Float in
                let e = start + j
                return w[e * k + (try best(e))] * (edgeWeights?[e] ?? 1)
            }
            // Stable sort by descending strength: ties keep the lower input first, as Python's sorted.
            let order = (0..<n).sorted { a, b in strength[a] != strength[b] ? strength[a] > strength[b] : a < b }
            for j in order.prefix(2) { gene.append(Genotype.Edge(space[start + j][try best(start + j)], j)) }
            start += n
        }
        return gene
    }
}
