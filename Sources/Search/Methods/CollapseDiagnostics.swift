import Foundation
import Kernels

/// Signs of DARTS' collapse onto parameter-free ops, recorded every epoch for every method
/// (metrics.jsonl and the epoch's log line): the derived normal cell filling with skip
/// connections, the derived genotype losing its parametric ops, and the op weights staying flat
/// (high entropy, so the discrete cell differs most from the supernet that was trained).
///
/// Zela et al. Understanding and Robustifying Differentiable Architecture Search. ICLR 2020.
public struct CollapseDiagnostics: Equatable, Sendable {
    /// skip_connect edges in the derived normal cell.
    public var skipCount: Int
    /// The share of the derived genotype's edges, both cells, whose op has no parameters
    /// (`Primitive.isParameterFree`).
    public var parameterFreeShare: Double
    /// The mean entropy (nats) of the softmax of the alpha rows, both cells: log K for uniform
    /// op weights, 0 for one-hot ones.
    public var alphaEntropy: Double

    public init(skipCount: Int, parameterFreeShare: Double, alphaEntropy: Double) {
        self.skipCount = skipCount
        self.parameterFreeShare = parameterFreeShare
        self.alphaEntropy = alphaEntropy
    }

    /// The diagnostics of a derived genotype and the op logits it was derived from.
    ///
    /// - Parameters:
    ///   - genotype: the derived genotype.
    ///   - alphas: op logits, one [edges, K] tensor per cell type (tensors of other ranks, such as
    ///     PC-DARTS' betas, are ignored).
    public init(genotype: Genotype, alphas: [Tensor]) throws {
        skipCount = genotype.normal.filter { $0.op == .skipConnect }.count
        let edges = genotype.normal + genotype.reduce
        parameterFreeShare = edges.isEmpty ? 0 : Double(edges.filter { $0.op.isParameterFree }.count) / Double(edges.count)
        let tape = Tape(recording: false)
        var sum = 0.0, rows = 0
        for a in alphas where a.shape.count == 2 {
            sum += try tape.softmaxEntropy(Variable(a)).value.scalars.reduce(0.0) { $0 + Double($1) }
            rows += a.shape[0]
        }
        alphaEntropy = rows > 0 ? sum / Double(rows) : 0
    }

    /// The diagnostics of a method's current genotype and architecture parameters.
    public init(_ method: SearchMethod) throws {
        try self.init(genotype: try method.genotype(), alphas: method.network.architecture.map(\.value))
    }

    /// The metrics.jsonl fields: `skip_count`, `parameter_free_share`, `alpha_entropy`.
    public var fields: [String: JSONValue] {
        ["skip_count": .number(Double(skipCount)), "parameter_free_share": .number(parameterFreeShare),
         "alpha_entropy": .number(alphaEntropy)]
    }

    /// For the epoch's log line: "skip 2, parameter-free 25%, alpha entropy 2.0790".
    public var summary: String {
        "skip \(skipCount), parameter-free \(Int((100 * parameterFreeShare).rounded()))%, alpha entropy \(String(format: "%.4f", alphaEntropy))"
    }
}
