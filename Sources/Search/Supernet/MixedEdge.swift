import Kernels

/// An edge of a search cell: a relaxed choice between candidate ops, mixed by the edge's row of
/// architecture weights. `MixedOp` (DARTS) and `PartialChannelMixedOp` (PC-DARTS) are two; a
/// method supplies its own through an `EdgeFactory`, without editing `SearchCell`.
public protocol MixedEdge: Layer {
    /// The candidate ops, in the order of the edge's weights.
    var primitives: [Primitive] { get }
    /// The edge's output for input x. weights: [K], this edge's row of op weights.
    func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable
    /// The output of candidate op `op` alone, unweighted (a supernet path); the other ops are not
    /// computed. x: [N, C, H, W] -> [N, C, H/stride, W/stride].
    func forward(_ x: Variable, op: Int, _ ctx: ForwardContext) throws -> Variable
}

extension MixedEdge {
    /// Edges that only mix (PC-DARTS's partial channels, DARTS-'s auxiliary skip) have no
    /// single-op forward.
    public func forward(_ x: Variable, op: Int, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "\(type(of: self))", "this mixed edge has no single-path forward")
    }
}

/// Where an edge sits and what it may choose from.
public struct EdgeSpec: Sendable {
    /// The cell's index in the network and the edge's index in the cell (reference order).
    public var cell: Int
    public var edge: Int
    public var reduction: Bool
    /// Channels of the edge's input and output.
    public var channels: Int
    /// 2 on reduction-cell edges from the two cell inputs, else 1.
    public var stride: Int
    /// The candidate ops of this edge (the search space's, or a pruned list).
    public var primitives: [Primitive]
}

/// Builds the mixed edge for a spec, drawing initial weights from the generator.
public typealias EdgeFactory = (EdgeSpec, inout RandomGenerator) -> MixedEdge

/// The architecture weights one cell's forward pass uses.
public struct CellWeights {
    /// [edges, K]: each edge's op weights (softmax of its alphas for DARTS).
    public var ops: Variable
    /// [edges]: a weight per edge scaling its whole output (PC-DARTS edge normalisation); nil: 1.
    public var edges: Variable?

    public init(ops: Variable, edges: Variable? = nil) {
        self.ops = ops
        self.edges = edges
    }
}

/// The candidate ops of every edge of the normal and the reduction cell. Usually the same list
/// on every edge; methods that prune ops per edge (P-DARTS) give each edge its own.
public struct CellSearchSpace: Codable, Equatable, Sendable {
    public var normal: [[Primitive]]
    public var reduce: [[Primitive]]

    public init(normal: [[Primitive]], reduce: [[Primitive]]) {
        self.normal = normal
        self.reduce = reduce
    }

    /// The same ops on each of `edges` edges.
    public static func uniform(_ ops: [Primitive], edges: Int) -> CellSearchSpace {
        CellSearchSpace(normal: Array(repeating: ops, count: edges), reduce: Array(repeating: ops, count: edges))
    }

    public func edges(reduction: Bool) -> [[Primitive]] { reduction ? reduce : normal }

    /// Ops per edge (every edge has the same number: alphas are [edges, K]).
    public var opsPerEdge: Int { normal.first?.count ?? 0 }
}
