import Kernels

/// The shape of a supernet: what `nas-mpi summary` and `nas-mpi search` share.
public struct SupernetConfig: Codable, Equatable, Sendable {
    /// Initial channels C (16 in the paper).
    public var channels: Int
    /// Cells (8 in the paper); reduction cells at layers/3 and 2*layers/3.
    public var layers: Int
    /// Input image shape [channels, height, width].
    public var inputShape: [Int]
    public var classes: Int
    public var steps: Int = 4
    public var stemMultiplier: Int = 3
    public var primitives: [Primitive] = Primitive.darts
    /// Which cells recompute their activations in backward instead of keeping them.
    public var recompute: RecomputePolicy = .auto
    /// Per-edge op lists overriding `primitives` (methods that prune ops per edge); nil: every
    /// edge has `primitives`.
    public var edgePrimitives: CellSearchSpace?

    /// Every edge's candidate ops.
    public var space: CellSearchSpace {
        edgePrimitives ?? .uniform(primitives, edges: SearchCell.edgeCount(steps: steps))
    }

    public init(channels: Int, layers: Int, inputShape: [Int], classes: Int, primitives: [Primitive] = Primitive.darts) {
        self.channels = channels
        self.layers = layers
        self.inputShape = inputShape
        self.classes = classes
        self.primitives = primitives
    }

    /// Checks that the network can be built and run on this input.
    public func validate() throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError(m) }
        guard channels >= 1 else { throw fail("channels must be at least 1, got \(channels)") }
        guard layers >= 1 else { throw fail("layers must be at least 1, got \(layers)") }
        guard classes >= 2 else { throw fail("classes must be at least 2, got \(classes)") }
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 >= 1 }) else {
            throw fail("input shape must be CxHxW with positive sizes, got \(inputShape.map(String.init).joined(separator: "x"))")
        }
        guard !primitives.isEmpty, primitives.contains(where: { $0 != .none }) else {
            throw fail("the search space needs at least one primitive other than none")
        }
        guard Set(primitives).count == primitives.count else { throw fail("primitives are listed twice: \(primitives.map(\.name))") }
        if let e = edgePrimitives {
            let n = SearchCell.edgeCount(steps: steps)
            guard e.normal.count == n, e.reduce.count == n, (e.normal + e.reduce).allSatisfy({ $0.count == e.opsPerEdge && $0.contains { $0 != .none } }) else {
                throw fail("per-edge op lists must give \(n) edges per cell type, each with the same number of ops and one other than none")
            }
        }
        // Each reduction halves the resolution with FactorizedReduce, which needs even sizes.
        var (h, w) = (inputShape[1], inputShape[2])
        for i in 0..<layers where Self.isReduction(i, layers: layers) {
            guard h % 2 == 0, w % 2 == 0, h >= 2, w >= 2 else {
                throw fail("input \(inputShape[1])x\(inputShape[2]) cannot be halved at reduction cell \(i) (size \(h)x\(w) is odd); use even sizes")
            }
            h /= 2; w /= 2
        }
    }

    /// Whether cell i is a reduction cell.
    public static func isReduction(_ i: Int, layers: Int) -> Bool {
        i == layers / 3 || i == 2 * layers / 3
    }
}

/// Activation recomputation ("gradient checkpointing") of supernet cells: memory for time.
/// The same ops run on the same values, so results agree up to the order in which gradient
/// contributions to a cell's inputs are summed (float rounding); BatchNorm running statistics
/// are updated once either way.
public enum RecomputePolicy: Hashable, Codable, Sendable, LosslessStringConvertible {
    /// Keep every activation.
    case none
    /// Recompute the full-resolution cells (before the first reduction), which hold the largest
    /// activations, for about 1/(3 x stages) more compute.
    case first
    /// Recompute every cell: the least memory, about a third more compute.
    case all
    /// `first` when the supernet's activations would exceed 2 GB for the batch, else `none`.
    case auto
    /// The first n cells (at least 1), written as the number: finer than `first` when recomputing
    /// one full-resolution cell already saves enough.
    case leading(Int)

    /// The policy a flag or a configuration names: none, first, all, auto, or a number of leading
    /// cells (1 or more); nil for anything else.
    public init?(_ description: String) {
        switch description {
        case "none": self = .none
        case "first": self = .first
        case "all": self = .all
        case "auto": self = .auto
        default:
            guard let n = Int(description), n >= 1 else { return nil }
            self = .leading(n)
        }
    }

    public var description: String {
        switch self {
        case .none: "none"
        case .first: "first"
        case .all: "all"
        case .auto: "auto"
        case .leading(let n): String(n)
        }
    }

    /// Stored as its flag spelling ("first", "1"), as the earlier string enum was.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let policy = RecomputePolicy(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "recompute must be none, first, all, auto or a number of cells >= 1, got '\(s)'")
        }
        self = policy
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// The cells to recompute among `cells` cells of a network with `layers` layers, given
    /// the bytes of activations it would keep (asked for `auto` only).
    public func recomputedCells(cells: Int, layers: Int, activationBytes: () -> Int) -> Set<Int> {
        let firstStage = Set(0..<(layers / 3))
        switch self {
        case .none: return []
        case .all: return Set(0..<cells)
        case .first: return firstStage
        case .auto: return activationBytes() > 2_000_000_000 ? firstStage : []
        case .leading(let n): return Set(0..<max(0, min(n, cells)))
        }
    }
}

/// An invalid configuration, with a message a user can act on.
public struct SearchConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The DARTS search network (reference `model_search.Network`): stem, normal and reduction cells
/// sharing two sets of architecture weights, global pooling, classifier. Its extension points:
/// the mixed edge (an `EdgeFactory`) and the architecture parameters (with or without edge
/// weights), both chosen by the search method.
///
/// Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019.
public final class SearchNetwork {
    public let config: SupernetConfig
    public let stem: Sequential
    public let cells: [SearchCell]
    public let classifier: LinearLayer
    /// The named architecture parameters (alphas, and betas with edge normalisation).
    public let architectureParameters: ArchitectureParameters
    /// Which cells recompute their activations (a memory/time choice; results are identical).
    public var recompute: RecomputePolicy
    /// The share of an edge's channels its ops see (1/K for partial channels), for the memory
    /// estimate behind `recompute: .auto`.
    public var activationFraction: Double = 1
    /// Replaces the op weights [edges, K] of a cell type (reduction: true) in `forward`, after the
    /// softmax; nil: the weights as they are. A method sets it around its weight step only
    /// (SDARTS-RS perturbs them there); the architect and evaluation never see it.
    public var opWeightTransform: ((_ ops: Variable, _ reduction: Bool, _ tape: Tape) throws -> Variable)?
    /// A discrete architecture to run instead of the mixed supernet (nil: the mixed supernet).
    /// With a path, `forward` computes each cell's chosen ops only, unweighted, without the
    /// architecture parameters (which then get no gradient) and without recomputation (a path
    /// keeps a small share of the mixed supernet's activations). Single-path methods set it
    /// around each forward pass.
    public var path: SupernetPath?
    /// Each cell's weights (for recomputed cells: whether they need gradients).
    private let cellParameters: [[Variable]]
    /// How the network was built (the seed, the edge factory, edge weights or not), so that
    /// `widened(to:)` builds the same network at another width.
    public let seed: UInt64
    public let makeEdge: EdgeFactory
    public let edgeNormalisation: Bool

    /// Architecture weights of normal cells [edges, K], initialised 1e-3 * N(0, 1).
    public var alphasNormal: Variable { architectureParameters.alphasNormal }
    /// Architecture weights of reduction cells [edges, K].
    public var alphasReduce: Variable { architectureParameters.alphasReduce }

    /// Builds the network; weights from the initialisation stream, architecture parameters from
    /// the architecture stream of `seed`.
    ///
    /// - Parameters:
    ///   - makeEdge: the mixed edge (DARTS: `MixedOp.factory`).
    ///   - edgeNormalisation: add per-edge betas (PC-DARTS).
    ///   - architecture: architecture parameters to share (a widened copy of a network keeps its
    ///     alphas, the same variables); nil: new ones from the seed.
    public init(_ config: SupernetConfig, seed: UInt64, makeEdge: @escaping EdgeFactory = MixedOp.factory,
                edgeNormalisation: Bool = false, architecture: ArchitectureParameters? = nil) throws {
        try config.validate()
        self.config = config
        self.seed = seed
        self.makeEdge = makeEdge
        self.edgeNormalisation = edgeNormalisation
        recompute = config.recompute
        var g = RandomGenerator(seed: seed, stream: .initialisation)
        let c = config.channels
        let cStem = config.stemMultiplier * c
        stem = Sequential([
            Conv2dLayer(config.inputShape[0], cStem, kernel: 3, padding: 1, generator: &g),
            BatchNormLayer(cStem, affine: true),
        ])
        var (cPrevPrev, cPrev, cCurr) = (cStem, cStem, c)
        var cells: [SearchCell] = []
        var reductionPrev = false
        let space = config.space
        for i in 0..<config.layers {
            let reduction = SupernetConfig.isReduction(i, layers: config.layers)
            if reduction { cCurr *= 2 }
            cells.append(SearchCell(index: i, steps: config.steps, cPrevPrev: cPrevPrev, cPrev: cPrev, c: cCurr,
                                    reduction: reduction, reductionPrev: reductionPrev,
                                    space: space.edges(reduction: reduction), makeEdge: makeEdge, generator: &g))
            reductionPrev = reduction
            (cPrevPrev, cPrev) = (cPrev, config.steps * cCurr)
        }
        self.cells = cells
        cellParameters = cells.map { cell in
            var s = NamedState()
            cell.collect(prefix: "", into: &s)
            return s.parameters.map(\.variable)
        }
        classifier = LinearLayer(cPrev, config.classes, generator: &g)
        architectureParameters = architecture ?? ArchitectureParameters(steps: config.steps, opsPerEdge: space.opsPerEdge,
                                                                        edgeNormalisation: edgeNormalisation, seed: seed)
        // Weights carry their state-dict names (for messages).
        for (name, v) in state.parameters { v.name = name }
    }

    /// Logits [N, classes] for images [N, C, H, W].
    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        if let path { return try forward(x, path: path, ctx) }
        var wNormal = try architectureParameters.cellWeights(reduction: false, t)
        var wReduce = try architectureParameters.cellWeights(reduction: true, t)
        if let transform = opWeightTransform {
            wNormal.ops = try transform(wNormal.ops, false, t)
            wReduce.ops = try transform(wReduce.ops, true, t)
        }
        let s = try stem.forward(x, ctx)
        var (s0, s1) = (s, s)
        let recomputed = recomputedCells(batch: x.shape[0])
        for (i, cell) in cells.enumerated() {
            let w = cell.reduction ? wReduce : wNormal
            let next: Variable
            if t.isRecording && recomputed.contains(i) {
                let parametersNeedGrad = cellParameters[i].contains { $0.requiresGrad }
                let inputs = [s0, s1, w.ops] + (w.edges.map { [$0] } ?? [])
                next = try t.checkpoint(inputs, parametersNeedGrad: parametersNeedGrad, op: "cell (recomputed)") { tape, ins, again in
                    try cell.forward(ins[0], ins[1], weights: CellWeights(ops: ins[2], edges: ins.count > 3 ? ins[3] : nil),
                                     ctx.on(tape, updateStatistics: !again))
                }
            } else {
                next = try cell.forward(s0, s1, weights: w, ctx)
            }
            // s0's last reader has run (unless it is also s1: the stem's output before cell 1);
            // its value goes unless a backward rule reads it.
            if s0 !== s1 { t.release(s0) }
            (s0, s1) = (s1, next)
        }
        return try classifier.forward(try t.globalAvgPool(s1), ctx)
    }

    /// Logits [N, classes] of the discrete architecture `path` for images [N, C, H, W].
    private func forward(_ x: Variable, path: SupernetPath, _ ctx: ForwardContext) throws -> Variable {
        let s = try stem.forward(x, ctx)
        var (s0, s1) = (s, s)
        for cell in cells {
            (s0, s1) = (s1, try cell.forward(s0, s1, path: path.edges(reduction: cell.reduction), ctx))
        }
        return try classifier.forward(try ctx.tape.globalAvgPool(s1), ctx)
    }

    /// The cells whose activations are recomputed for a batch of this size.
    public func recomputedCells(batch: Int) -> Set<Int> {
        recompute.recomputedCells(cells: cells.count, layers: config.layers) { estimatedActivationBytes(batch: batch) }
    }

    /// Tensors of a cell's state size that a training step keeps per mixed edge (the candidate
    /// ops' intermediates), on the low side: measured 11.8 with `bench step --recompute none` at
    /// C=16, 8 layers, 3x32x32 (peak memory 1529 MB at batch 32, 3015 MB at batch 64), where a
    /// mixed edge applies its ops' last BatchNorms inside its weighted sum; about 18 for an edge
    /// that cannot (P-DARTS's op dropout on op outputs, `fusesOps` off).
    public static let activationTensorsPerEdge = 11

    /// A rough size of the activations a training step keeps: `activationTensorsPerEdge`
    /// tensors of a cell's state size per mixed edge.
    public func estimatedActivationBytes(batch: Int) -> Int {
        var (h, w, c) = (config.inputShape[1], config.inputShape[2], config.channels)
        var total = 0
        for i in 0..<config.layers {
            if SupernetConfig.isReduction(i, layers: config.layers) { h /= 2; w /= 2; c *= 2 }
            total += Self.activationTensorsPerEdge * SearchCell.edgeCount(steps: config.steps) * batch * c * h * w * 4
        }
        return Int(Double(total) * activationFraction)
    }

    /// Mean cross-entropy and logits of a batch.
    public func loss(_ images: Tensor, _ labels: [Int], _ ctx: ForwardContext) throws -> (loss: Variable, logits: Variable) {
        let logits = try forward(Variable(images), ctx)
        return (try ctx.tape.crossEntropy(logits, labels: labels), logits)
    }

    /// Parameters (weights) and BatchNorm buffers with reference state-dict names; alphas excluded.
    public var state: NamedState {
        var s = NamedState()
        stem.collect(prefix: "stem", into: &s)
        for (i, c) in cells.enumerated() { c.collect(prefix: "cells.\(i)", into: &s) }
        classifier.collect(prefix: "classifier", into: &s)
        return s
    }

    /// The weights, in state-dict order.
    public var weights: [Variable] { state.parameters.map(\.variable) }

    /// The architecture parameters, named, in creation order.
    public var architecture: [Variable] { architectureParameters.all }

    /// The derived genotype under `policy` (default: the reference rule, with edge weights when
    /// the network has them).
    public func genotype(_ policy: DerivationPolicy? = nil) throws -> Genotype {
        try (policy ?? DerivationPolicy(space: config.space, steps: config.steps))
            .derive(normal: try architectureParameters.strengths(reduction: false),
                    reduce: try architectureParameters.strengths(reduction: true))
    }
}
