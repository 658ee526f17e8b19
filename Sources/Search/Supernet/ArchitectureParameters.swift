import Kernels

/// The architecture parameters of a supernet, as named tensors: `alphas_normal` and
/// `alphas_reduce` ([edges, K], one row of op logits per edge), and, with edge normalisation
/// (PC-DARTS), `betas_normal` and `betas_reduce` ([edges], one logit per edge, softmaxed over
/// each node's incoming edges). Everything that stores or shows them — the architect's Adam,
/// checkpoints, alphas.jsonl, safetensors export and `--init-weights` — goes through `all` by
/// name, so a method that adds parameters needs no edit elsewhere.
public final class ArchitectureParameters {
    /// Every parameter, in creation order (the order of the reference and of the Adam state).
    public let all: [Variable]
    public let steps: Int

    /// Draws the parameters as the references do: 1e-3 * N(0, 1), alphas_normal, alphas_reduce,
    /// then betas_normal, betas_reduce, from the run seed's architecture stream.
    public init(steps: Int, opsPerEdge k: Int, edgeNormalisation: Bool, seed: UInt64) {
        self.steps = steps
        let edges = SearchCell.edgeCount(steps: steps)
        var g = RandomGenerator(seed: seed, stream: .architecture)
        func draw(_ name: String, _ shape: [Int]) -> Variable {
            var t = Tensor(shape: shape)
            g.fillNormal(&t, std: 1e-3)
            return Variable(t, requiresGrad: true, name: name)
        }
        var all = [draw("alphas_normal", [edges, k]), draw("alphas_reduce", [edges, k])]
        if edgeNormalisation { all += [draw("betas_normal", [edges]), draw("betas_reduce", [edges])] }
        self.all = all
    }

    /// The parameter called `name`, if there is one.
    public subscript(name: String) -> Variable? { all.first { $0.name == name } }

    public var alphasNormal: Variable { all[0] }
    public var alphasReduce: Variable { all[1] }
    /// Whether edge weights (betas) scale the edges.
    public var hasEdgeWeights: Bool { self["betas_normal"] != nil }

    /// The weights one cell type uses in a forward pass, on the tape (so gradients reach the
    /// parameters): softmax over each alpha row, and the per-node softmax of the betas.
    public func cellWeights(reduction: Bool, _ tape: Tape) throws -> CellWeights {
        let ops = try tape.softmax(reduction ? alphasReduce : alphasNormal)
        guard let betas = self[reduction ? "betas_reduce" : "betas_normal"] else { return CellWeights(ops: ops) }
        return CellWeights(ops: ops, edges: try tape.segmentSoftmax(betas, segments: SearchCell.nodeSegments(steps: steps)))
    }

    /// The normalised values of one cell type for derivation and reports: op weights [edges * K]
    /// and edge weights [edges] (nil without betas).
    public func strengths(reduction: Bool) throws -> CellStrengths {
        let w = try cellWeights(reduction: reduction, Tape(recording: false))
        return CellStrengths(ops: w.ops.value, edges: w.edges?.value)
    }

    /// Each parameter's normalised form, by name (softmax rows for alphas, node-wise softmax for
    /// betas), as alphas.jsonl records them.
    public func normalised() throws -> [(name: String, value: Tensor)] {
        let tape = Tape(recording: false)
        return try all.map { v in
            if v.shape.count == 2 { return (v.name, try tape.softmax(Variable(v.value)).value) }
            return (v.name, try tape.segmentSoftmax(Variable(v.value), segments: SearchCell.nodeSegments(steps: steps)).value)
        }
    }
}
