import Kernels

/// The DARTS cell search space as a set of discrete genotypes, for the strategies that train every
/// candidate (regularized evolution, random search): uniform sampling, one-decision mutation
/// (Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search"), and the
/// decisions two genotypes differ in.
///
/// A genotype of the space has, in the normal and in the reduction cell, `steps` intermediate
/// nodes; node i takes two distinct inputs among the 2 + i earlier nodes (the two cell inputs and
/// nodes 0..<i), each through one op of `ops`; the cell concatenates every intermediate node.
///
/// A *decision* is one edge's input or one edge's op. A node's two edges are an unordered pair:
/// `[(a, 0), (b, 1)]` and `[(b, 1), (a, 0)]` are one architecture. So `distance` matches each
/// node's edges against the other genotype's in the way that differs in fewer decisions (keep
/// the slots, or swap them), and `size` counts unordered pairs. `mutate` keeps the slots, so a
/// child also differs from its parent in exactly one entry of `decisions(of:)`.
public struct GenotypeSpace: Codable, Equatable, Sendable {
    /// Intermediate nodes per cell.
    public let steps: Int
    /// The ops an edge chooses from, in order.
    public let ops: [Primitive]

    /// The seven ops of the DARTS space other than `none` (a derived cell never holds `none`).
    public static let dartsOps: [Primitive] = Primitive.darts.filter { $0 != .none }

    /// The DARTS space: 4 nodes, the seven ops of `dartsOps`.
    public static let darts = try! GenotypeSpace()

    /// A space of `steps` nodes per cell over `ops`.
    ///
    /// - Throws: `GenotypeError` when `steps` < 1, or `ops` is empty, repeats an op or holds
    ///   `none` (an edge of a trained genotype always computes something).
    public init(steps: Int = 4, ops: [Primitive] = GenotypeSpace.dartsOps) throws {
        guard steps >= 1 else { throw GenotypeError("a genotype space needs at least 1 node per cell, got \(steps)") }
        guard !ops.isEmpty else { throw GenotypeError("a genotype space needs at least one op") }
        guard !ops.contains(.none) else {
            throw GenotypeError("a genotype space cannot offer 'none': a trained genotype's edges all compute an op")
        }
        guard Set(ops).count == ops.count else {
            throw GenotypeError("the ops of a genotype space must be distinct, got \(ops.map(\.name).joined(separator: ", "))")
        }
        self.steps = steps
        self.ops = ops
    }

    /// The nodes every cell concatenates: all intermediate nodes, 2...steps + 1.
    public var concat: [Int] { Array(2..<(steps + 2)) }

    /// The number of genotypes (architectures: a node's two edges counted as an unordered pair),
    /// as a Double since the DARTS space holds about 1.1e18.
    ///
    /// A node i has C(i + 2, 2) input pairs and K^2 op choices; a cell is the product over its
    /// nodes; a genotype is a normal and a reduction cell.
    public var size: Double {
        let k = Double(ops.count)
        let cell = (0..<steps).reduce(1.0) { acc, i in
            let n = Double(i + 2)
            return acc * (n * (n - 1) / 2) * k * k
        }
        return cell * cell
    }

    // MARK: Membership

    /// Whether `genotype` lies in the space.
    public func contains(_ genotype: Genotype) -> Bool { (try? validate(genotype)) != nil }

    /// Checks that `genotype` lies in the space: a valid genotype of `steps` nodes per cell,
    /// each node's inputs distinct, every op one of `ops`, and both cells concatenating all
    /// intermediate nodes.
    ///
    /// - Throws: `GenotypeError` naming the first thing that does not fit.
    public func validate(_ genotype: Genotype) throws {
        try genotype.validate()
        for (name, edges, cellConcat) in [("normal", genotype.normal, genotype.normalConcat),
                                          ("reduce", genotype.reduce, genotype.reduceConcat)] {
            guard edges.count == 2 * steps else {
                throw GenotypeError("\(name) cell has \(edges.count / 2) nodes; the space has \(steps)")
            }
            for (k, e) in edges.enumerated() where !ops.contains(e.op) {
                throw GenotypeError("\(name) edge \(k) uses '\(e.op.name)', which is not among the space's ops (\(ops.map(\.name).joined(separator: ", ")))")
            }
            for node in 0..<steps where edges[2 * node].input == edges[2 * node + 1].input {
                throw GenotypeError("\(name) node \(node + 2) takes input \(edges[2 * node].input) twice; a node's two inputs must be distinct")
            }
            guard cellConcat == concat else {
                throw GenotypeError("\(name)_concat \(cellConcat) must list all intermediate nodes \(concat)")
            }
        }
    }

    // MARK: Sampling and mutation

    /// A uniformly random genotype of the space.
    ///
    /// For each cell and node: an input pair uniformly among the pairs of distinct earlier nodes
    /// (stored in increasing order), then each edge's op uniformly; every genotype of `size` is
    /// equally likely. Draws 4 numbers per node, normal cell first.
    public func sample(using generator: inout RandomGenerator) -> Genotype {
        func cell() -> [Genotype.Edge] {
            var edges: [Genotype.Edge] = []
            edges.reserveCapacity(2 * steps)
            for node in 0..<steps {
                let n = node + 2
                // A uniform ordered pair of distinct inputs, so a uniform unordered one.
                let a = generator.int(below: n)
                var b = generator.int(below: n - 1)
                if b >= a { b += 1 }
                let first = ops[generator.int(below: ops.count)]
                let second = ops[generator.int(below: ops.count)]
                edges.append(Genotype.Edge(first, min(a, b)))
                edges.append(Genotype.Edge(second, max(a, b)))
            }
            return edges
        }
        let normal = cell()
        let reduce = cell()
        return try! Genotype(normal: normal, normalConcat: concat, reduce: reduce, reduceConcat: concat)
    }

    /// Whether `mutate` can change a genotype: an edge has another op to take, or some node has
    /// a third earlier node to move an input to.
    public var isMutable: Bool { ops.count >= 2 || steps >= 2 }

    /// A child of `parent` that differs from it in exactly one decision (Real et al. 2019: the op
    /// mutation and the hidden-state mutation, without the identity mutation).
    ///
    /// Draws the normal or the reduction cell, then whether to change an op or an input, then one
    /// of the cell's edges, each uniformly. An op changes to a uniformly drawn different op; an
    /// input changes to a uniformly drawn earlier node that is neither the edge's input nor the
    /// node's other input. A draw that cannot change anything (an input of node 0, whose inputs
    /// are always {0, 1}; an op when the space has one) is drawn again. The edge keeps its slot.
    ///
    /// - Throws: `GenotypeError` when `parent` is not in the space, or the space holds a single
    ///   genotype (one node, one op).
    public func mutate(_ parent: Genotype, using generator: inout RandomGenerator) throws -> Genotype {
        try validate(parent)
        guard isMutable else {
            throw GenotypeError("a space of 1 node and 1 op holds a single genotype; there is nothing to mutate")
        }
        var child = parent
        while true {
            let reduction = generator.int(below: 2) == 1
            let changeOp = generator.int(below: 2) == 0
            let edge = generator.int(below: 2 * steps)
            var edges = reduction ? child.reduce : child.normal
            if changeOp {
                guard ops.count >= 2 else { continue }
                let current = ops.firstIndex(of: edges[edge].op)!
                var k = generator.int(below: ops.count - 1)
                if k >= current { k += 1 }
                edges[edge].op = ops[k]
            } else {
                let n = edge / 2 + 2
                guard n > 2 else { continue }
                let taken = [edges[edge].input, edges[edge ^ 1].input]
                let free = (0..<n).filter { !taken.contains($0) }
                edges[edge].input = free[generator.int(below: free.count)]
            }
            if reduction { child.reduce = edges } else { child.normal = edges }
            return child
        }
    }

    // MARK: Decisions

    /// One decision of a genotype: an edge's input or its op.
    public enum Decision: Hashable, Sendable {
        case input(Int)
        case op(Primitive)
    }

    /// The genotype's decisions as stored, `8 * steps` of them: the normal cell, then the
    /// reduction cell; in each, node by node, edge slot 0 then 1; for each edge its input, then
    /// its op: entry `4 * (cell * steps + node) + 2 * slot + (0 for the input, 1 for the op)`,
    /// cell 0 normal and 1 reduce. Two genotypes compare entry by entry; `distance` in addition
    /// forgives a node's edges listed in the other order.
    ///
    /// - Precondition: `genotype` has `steps` nodes per cell.
    public func decisions(of genotype: Genotype) -> [Decision] {
        precondition(genotype.normal.count == 2 * steps && genotype.reduce.count == 2 * steps,
                     "decisions(of:): the genotype has \(genotype.normal.count / 2) nodes, the space \(steps)")
        return (genotype.normal + genotype.reduce).flatMap { [Decision.input($0.input), .op($0.op)] }
    }

    /// The number of decisions in which `a` and `b` differ, a node's two edges taken as an
    /// unordered pair: for each node, the smaller count of the two ways to match its edges with
    /// the other genotype's (slot to slot, or swapped), where a matched edge pair counts 1 for a
    /// different input and 1 for a different op. 0 exactly when `a` and `b` are one architecture;
    /// 1 between a parent and any child of `mutate`.
    ///
    /// - Precondition: both genotypes have `steps` nodes per cell.
    public func distance(_ a: Genotype, _ b: Genotype) -> Int {
        precondition([a.normal.count, a.reduce.count, b.normal.count, b.reduce.count].allSatisfy { $0 == 2 * steps },
                     "distance: both genotypes must have \(steps) nodes per cell")
        func edge(_ e: Genotype.Edge, _ f: Genotype.Edge) -> Int { (e.input != f.input ? 1 : 0) + (e.op != f.op ? 1 : 0) }
        var total = 0
        for (x, y) in [(a.normal, b.normal), (a.reduce, b.reduce)] {
            for node in 0..<steps {
                let (x0, x1, y0, y1) = (x[2 * node], x[2 * node + 1], y[2 * node], y[2 * node + 1])
                total += min(edge(x0, y0) + edge(x1, y1), edge(x0, y1) + edge(x1, y0))
            }
        }
        return total
    }

    // MARK: Codable (through the validating initialiser)

    private enum CodingKeys: String, CodingKey { case steps, ops }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(steps: try c.decode(Int.self, forKey: .steps), ops: try c.decode([Primitive].self, forKey: .ops))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(steps, forKey: .steps)
        try c.encode(ops, forKey: .ops)
    }
}
