/// One discrete architecture inside a supernet: for every edge of the normal and the reduction
/// cell either nil (the edge is not part of the architecture) or the index of its one op in the
/// edge's candidate list. A supernet given a path (`SearchNetwork.path`) computes only those ops,
/// unweighted, as the genotype's own network would: the "single-path" forward of weight-sharing
/// methods that train one sampled architecture per step (random search with weight sharing, ENAS).
public struct SupernetPath: Hashable, Sendable {
    /// [edges] per cell type, edges in reference order (node 0's two inputs, node 1's three, ...).
    public var normal: [Int?]
    public var reduce: [Int?]

    public init(normal: [Int?], reduce: [Int?]) {
        self.normal = normal
        self.reduce = reduce
    }

    /// The path of a genotype: edge `offset(node) + input` carries the genotype's op for that
    /// input of that node.
    ///
    /// - Parameters:
    ///   - space: each edge's candidate ops (the supernet's `config.space`).
    ///   - steps: intermediate nodes per cell.
    /// - Throws: `GenotypeError` when the genotype has another node count, feeds a node twice
    ///   from one input, uses an op that edge does not offer, or outputs other nodes than all
    ///   intermediate ones (the supernet concatenates every node).
    public init(_ genotype: Genotype, space: CellSearchSpace, steps: Int) throws {
        guard genotype.steps == steps else {
            throw GenotypeError("the genotype has \(genotype.steps) nodes per cell, the supernet \(steps)")
        }
        func cell(_ edges: [Genotype.Edge], _ concat: [Int], _ ops: [[Primitive]], _ name: String) throws -> [Int?] {
            guard concat.sorted() == Array(2..<(steps + 2)) else {
                throw GenotypeError("\(name)_concat \(concat): a supernet path outputs every intermediate node 2...\(steps + 1)")
            }
            var path = [Int?](repeating: nil, count: SearchCell.edgeCount(steps: steps))
            for (k, e) in edges.enumerated() {
                let node = k / 2
                let edge = Self.edgeOffset(node: node) + e.input
                guard path[edge] == nil else {
                    throw GenotypeError("\(name) node \(node + 2) takes input \(e.input) twice; a supernet edge carries one op")
                }
                guard let op = ops[edge].firstIndex(of: e.op) else {
                    throw GenotypeError("\(name) edge \(k) uses '\(e.op.name)', which supernet edge \(edge) does not offer (\(ops[edge].map(\.name).joined(separator: ", ")))")
                }
                path[edge] = op
            }
            return path
        }
        normal = try cell(genotype.normal, genotype.normalConcat, space.normal, "normal")
        reduce = try cell(genotype.reduce, genotype.reduceConcat, space.reduce, "reduce")
    }

    /// The path of one cell type.
    public func edges(reduction: Bool) -> [Int?] { reduction ? reduce : normal }

    /// The index of node `node`'s first incoming edge: 0, 2, 5, 9, ...
    public static func edgeOffset(node: Int) -> Int { (0..<node).reduce(0) { $0 + 2 + $1 } }

    /// One-hot op weights [edges, K] of one cell type: 1 on each chosen op, 0 elsewhere. The
    /// weighted supernet forward with these weights computes what the path computes (at the cost
    /// of every op): the reference against which the single-path forward is tested.
    public func oneHotWeights(reduction: Bool, opsPerEdge k: Int) -> [Float] {
        let path = edges(reduction: reduction)
        var w = [Float](repeating: 0, count: path.count * k)
        for (e, op) in path.enumerated() { if let op { w[e * k + op] = 1 } }
        return w
    }
}
