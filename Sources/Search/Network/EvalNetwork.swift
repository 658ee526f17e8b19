import Kernels

/// The shape of an evaluation network built from a genotype.
public struct EvalNetworkConfig: Codable, Equatable, Sendable {
    public var channels: Int
    public var layers: Int
    public var inputShape: [Int]
    public var classes: Int
    public var auxiliary: Bool
    public var stemMultiplier: Int = 3

    public init(channels: Int, layers: Int, inputShape: [Int], classes: Int, auxiliary: Bool) {
        self.channels = channels
        self.layers = layers
        self.inputShape = inputShape
        self.classes = classes
        self.auxiliary = auxiliary
    }

    /// The cell after which the auxiliary head sits (reference: 2 * layers / 3).
    public var auxiliaryCell: Int { 2 * layers / 3 }

    public func validate() throws {
        // The same rules as the supernet's (channels, layers, even sizes at each reduction).
        try SupernetConfig(channels: channels, layers: layers, inputShape: inputShape, classes: classes).validate()
        if auxiliary {
            // The head pools 5x5 with stride 3, then needs a 2x2 map for its 2x2 convolution.
            var (h, w) = (inputShape[1], inputShape[2])
            for i in 0...auxiliaryCell where SupernetConfig.isReduction(i, layers: layers) { h /= 2; w /= 2 }
            guard (h - 5) / 3 + 1 >= 2, (w - 5) / 3 + 1 >= 2, h >= 5, w >= 5 else {
                throw SearchConfigError("the auxiliary head needs at least an 8x8 map after cell \(auxiliaryCell); input \(inputShape[1])x\(inputShape[2]) gives \(h)x\(w) (drop --auxiliary)")
            }
        }
    }
}

/// A cell built from a genotype (reference `model.Cell`): two ops per node on the chosen inputs,
/// summed; drop path on every non-identity op in training.
public final class EvalCell {
    public let reduction: Bool
    /// Both start with a ReLU of their input (ReLUConvBN, FactorizedReduce), which the network
    /// computes once per cell output (`forward(activated:_:_:)`).
    public let preprocess0: ReLUPrefixed
    public let preprocess1: ReLUPrefixed
    public let ops: [Layer]
    public let inputs: [Int]
    public let concat: [Int]

    init(genotype: Genotype, cPrevPrev: Int, cPrev: Int, c: Int, reduction: Bool, reductionPrev: Bool, generator: inout RandomGenerator) {
        self.reduction = reduction
        preprocess0 = reductionPrev
            ? FactorizedReduce(cPrevPrev, c, affine: true, generator: &generator) as ReLUPrefixed
            : ReLUConvBN(cPrevPrev, c, kernel: 1, stride: 1, padding: 0, affine: true, generator: &generator)
        preprocess1 = ReLUConvBN(cPrev, c, kernel: 1, stride: 1, padding: 0, affine: true, generator: &generator)
        let edges = reduction ? genotype.reduce : genotype.normal
        concat = reduction ? genotype.reduceConcat : genotype.normalConcat
        inputs = edges.map(\.input)
        ops = edges.map { e in
            makeOperation(e.op, channels: c, stride: reduction && e.input < 2 ? 2 : 1, affine: true, poolBatchNorm: false,
                          generator: &generator)!
        }
    }

    var multiplier: Int { concat.count }

    /// Per edge: for a pooling op, a key equal for edges that pool the same input the same way
    /// (kind, stride, input); nil for other ops.
    private lazy var poolKey: [PoolKey?] = ops.indices.map { k in
        guard let pool = ops[k] as? PoolLayer else { return nil }
        return PoolKey(kind: pool.kind, stride: pool.stride, input: inputs[k])
    }

    private struct PoolKey: Hashable {
        let kind: PoolLayer.Kind
        let stride: Int
        let input: Int
    }

    /// Per edge: whether a later edge repeats this edge's pool.
    private lazy var poolRepeatedLater: [Bool] = ops.indices.map { k in
        guard let key = poolKey[k] else { return false }
        return poolKey[(k + 1)...].contains(key)
    }

    /// The cell on ReLU(s0) and ReLU(s1), its inputs' ReLUs. With `ctx.fusesOps`, an op ending
    /// in BatchNorm hands its output before that BatchNorm to the node's sum, which applies it
    /// (`Tape.batchNormSum`; the same values to the bit).
    ///
    /// With `activatedOutput`, the cell's output goes through a ReLU in the same op as the
    /// concatenation (`concatChannelsReLU`): what the next cells read.
    func forward(activated r0: ActivatedCellOutput, _ r1: ActivatedCellOutput, _ ctx: ForwardContext,
                 activatedOutput: Bool = false) throws -> Variable {
        let t = ctx.tape
        let states = try nodes(r0, r1, ctx)
        let out = activatedOutput && ctx.fusesOps ? try t.concatChannelsReLU(concat.map { states[$0] }) : try t.concatChannels(concat.map { states[$0] })
        // The node sums that only the concatenation reads are not kept (those an op reads are).
        for s in states { t.release(s) }
        return out
    }

    /// The cell's output as the next cells read it (`ActivatedCellOutput`), its concatenation
    /// not formed: the node states, which their readers keep. The other states are released.
    func forwardActivated(_ r0: ActivatedCellOutput, _ r1: ActivatedCellOutput, _ ctx: ForwardContext) throws -> ActivatedCellOutput {
        let states = try nodes(r0, r1, ctx)
        let parts = concat.map { states[$0] }
        for s in states where !parts.contains(where: { $0 === s }) { ctx.tape.release(s) }
        return ActivatedCellOutput(states: parts)
    }

    /// The cell's states: its two preprocessed inputs, then each node's sum.
    private func nodes(_ r0: ActivatedCellOutput, _ r1: ActivatedCellOutput, _ ctx: ForwardContext) throws -> [Variable] {
        let t = ctx.tape
        var states = [try preprocess0.forward(activated: r0, ctx), try preprocess1.forward(activated: r1, ctx)]
        // An edge that pools a state as an earlier edge did repeats that op (`Tape.repeatOp`): the
        // same values and gradients to the bit, one forward pass fewer (DARTS_V2's reduction cell
        // pools each input two or three times).
        var pooled: [PoolKey: [Variable]] = [:]
        for i in 0..<(ops.count / 2) {
            var pair: [Variable] = [], masks: [Tensor?] = [], norms: [BatchNormApplication?] = []
            for k in [2 * i, 2 * i + 1] {
                var h: Variable, norm: BatchNormApplication? = nil
                if ctx.fusesOps, let op = ops[k] as? EndsWithBatchNorm {
                    let (y, bn) = try op.beforeBatchNorm(states[inputs[k]], relu: true, ctx)
                    (h, norm) = (y, bn.application(ctx))
                } else if ctx.fusesOps, let key = poolKey[k] {
                    h = try pooled[key]?.first.map(t.repeatOp) ?? ops[k].forward(states[inputs[k]], ctx)
                    pooled[key, default: []].append(h)
                } else {
                    h = try ops[k].forward(states[inputs[k]], ctx)
                }
                norms.append(norm)
                // Drop path's masks are applied inside the node's sum (`maskedSum`, `batchNormSum`).
                if ctx.training, let dp = ctx.dropPath, dp.probability > 0, !(ops[k] is Identity) {
                    masks.append(try t.dropPathMask(samples: h.shape[0], p: dp.probability, generator: &dp.generator))
                } else {
                    masks.append(nil)
                }
                pair.append(h)
            }
            if norms.contains(where: { $0 != nil }) {
                states.append(try t.batchNormSum(pair, batchNorms: norms, masks: masks))
            } else {
                states.append(masks.allSatisfy { $0 == nil } ? try t.add(pair[0], pair[1]) : try t.maskedSum(pair, masks: masks))
            }
            // An op's own output (not a state passed through by skip_connect) is used by the sum
            // alone, whose backward does not read it (nor a fused BatchNorm's, which it keeps):
            // dropped unless the op's backward keeps it.
            // A pooled output a later edge repeats is released after that edge's node (the
            // repetitions share its value).
            for (k, h) in zip([2 * i, 2 * i + 1], pair) where h !== states[inputs[k]] && !(ctx.fusesOps && poolRepeatedLater[k]) {
                t.release(h)
                if ctx.fusesOps, let key = poolKey[k] { pooled[key]?.forEach(t.release) }
            }
        }
        return states
    }

    func collect(prefix: String, into state: inout NamedState) {
        preprocess0.collect(prefix: qualified(prefix, "preprocess0"), into: &state)
        preprocess1.collect(prefix: qualified(prefix, "preprocess1"), into: &state)
        for (k, op) in ops.enumerated() { op.collect(prefix: qualified(prefix, "_ops.\(k)"), into: &state) }
    }
}

/// The auxiliary classifier of the reference (`AuxiliaryHeadCIFAR`): ReLU, 5x5 average pool with
/// stride 3, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear.
public final class AuxiliaryHead: Layer {
    public let features: Sequential
    public let classifier: LinearLayer

    init(_ c: Int, classes: Int, generator: inout RandomGenerator) {
        features = Sequential([
            ReLULayer(),
            AvgPoolLayer(kernel: 5, stride: 3),
            Conv2dLayer(c, 128, kernel: 1, generator: &generator),
            BatchNormLayer(128, affine: true),
            ReLULayer(),
            Conv2dLayer(128, 768, kernel: 2, generator: &generator),
            BatchNormLayer(768, affine: true),
            ReLULayer(),
        ])
        classifier = LinearLayer(768, classes, generator: &generator)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        try forward(activated: try ctx.tape.relu(x), ctx)
    }

    /// The head on ReLU(x), its first layer's output.
    public func forward(activated r: Variable, _ ctx: ForwardContext) throws -> Variable {
        let h = try features.forwardAfterReLU(r, ctx)
        let flat = try ctx.tape.globalAvgPool(h)  // the map is 1x1 for 8x8 inputs: a view, as the reference's x.view
        return try classifier.forward(flat, ctx)
    }

    public func collect(prefix: String, into state: inout NamedState) {
        features.collect(prefix: qualified(prefix, "features"), into: &state)
        classifier.collect(prefix: qualified(prefix, "classifier"), into: &state)
    }
}

/// Average pooling without padding (the auxiliary head's 5x5, stride 3).
final class AvgPoolLayer: Layer {
    let kernel: Int, stride: Int
    init(kernel: Int, stride: Int) { self.kernel = kernel; self.stride = stride }
    func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        try ctx.tape.avgPool2d(x, kernel: kernel, stride: stride, padding: 0)
    }
    func collect(prefix: String, into state: inout NamedState) {}
}

/// The network trained from scratch in the evaluation phase (reference `model.NetworkCIFAR`):
/// stem (3C), cells from the genotype with reductions at layers/3 and 2*layers/3, optional
/// auxiliary head after cell 2*layers/3, global pooling, classifier. Affine BatchNorm throughout.
///
/// Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019, section 3.
public final class EvalNetwork {
    public let config: EvalNetworkConfig
    public let genotype: Genotype
    public let stem: Sequential
    public let cells: [EvalCell]
    public let auxiliaryHead: AuxiliaryHead?
    public let classifier: LinearLayer

    public init(_ config: EvalNetworkConfig, genotype: Genotype, seed: UInt64) throws {
        try config.validate()
        try genotype.validate()
        self.config = config
        self.genotype = genotype
        var g = RandomGenerator(seed: seed, stream: .initialisation)
        let cStem = config.stemMultiplier * config.channels
        stem = Sequential([
            Conv2dLayer(config.inputShape[0], cStem, kernel: 3, padding: 1, generator: &g),
            BatchNormLayer(cStem, affine: true),
        ])
        var (cPrevPrev, cPrev, cCurr) = (cStem, cStem, config.channels)
        var cells: [EvalCell] = []
        var reductionPrev = false
        var cAux = 0
        for i in 0..<config.layers {
            let reduction = SupernetConfig.isReduction(i, layers: config.layers)
            if reduction { cCurr *= 2 }
            let cell = EvalCell(genotype: genotype, cPrevPrev: cPrevPrev, cPrev: cPrev, c: cCurr, reduction: reduction,
                                reductionPrev: reductionPrev, generator: &g)
            cells.append(cell)
            reductionPrev = reduction
            (cPrevPrev, cPrev) = (cPrev, cell.multiplier * cCurr)
            if i == config.auxiliaryCell { cAux = cPrev }
        }
        self.cells = cells
        auxiliaryHead = config.auxiliary ? AuxiliaryHead(cAux, classes: config.classes, generator: &g) : nil
        classifier = LinearLayer(cPrev, config.classes, generator: &g)
    }

    /// Which cells recompute their activations in backward instead of keeping them (`train
    /// --recompute`): a memory/time choice, the same results up to float summation order.
    public var recompute: RecomputePolicy = .none

    /// Logits, and the auxiliary head's logits in training mode when the head exists.
    ///
    /// A recomputed cell runs once without a tape and keeps only its inputs and output; backward
    /// runs it again on a tape (BatchNorm with the same batch statistics, running averages
    /// updated once) with the drop-path generator rewound to where the first run started, so the
    /// same paths are dropped.
    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> (logits: Variable, auxiliary: Variable?) {
        let t = ctx.tape
        let s = try stem.forward(x, ctx)
        // Every cell output feeds the next two cells' preprocessing, each starting with a ReLU:
        // it is computed once (r0, r1: the ReLUs of the cell's two inputs).
        let rs = ActivatedCellOutput(activated: t.relu(s))
        if !cells.isEmpty { t.release(s) }  // only its ReLU reads it, and that keeps its own output
        var (r0, r1) = (rs, rs)
        var last = s
        var aux: Variable?
        // Cell outputs handed on as node states (by cell index) whose readers are not all recorded.
        var handedOn: [(cell: Int, output: ActivatedCellOutput)] = []
        let recomputed = t.isRecording ? recomputedCells(batch: x.shape[0]) : []
        for (i, cell) in cells.enumerated() {
            // Every cell output but the last is read only through a ReLU: the cell applies it in
            // its concatenation, or hands on its node states for its readers to apply it as they
            // read them (`forwardActivated`).
            let activated = ctx.fusesOps && i + 1 < cells.count
            let head = i == config.auxiliaryCell && ctx.training ? auxiliaryHead : nil
            var r: ActivatedCellOutput?
            if recomputed.contains(i) {
                let start = ctx.dropPath?.generator
                last = try t.checkpoint([try r0.tensor(t), try r1.tensor(t)], parametersNeedGrad: true,
                                        op: "cell (recomputed)") { tape, ins, again in
                    // The second run draws the first run's masks, then leaves the generator as it was.
                    let after = ctx.dropPath?.generator
                    if again, let start { ctx.dropPath?.generator = start }
                    defer { if again, let after { ctx.dropPath?.generator = after } }
                    return try cell.forward(activated: ActivatedCellOutput(activated: ins[0]), ActivatedCellOutput(activated: ins[1]),
                                            ctx.on(tape, updateStatistics: !again), activatedOutput: activated)
                }
                if activated { r = ActivatedCellOutput(activated: last) }
            } else if activated, head == nil {
                let handed = try cell.forwardActivated(r0, r1, ctx)
                handedOn.append((i, handed))
                r = handed
            } else {
                // Under the auxiliary head the output is formed: the head's pooling adds its
                // gradient into the tensor's window by window, after the next cells' readers,
                // and the states get the sum gated once, as they would without the fusion.
                last = try cell.forward(activated: r0, r1, ctx, activatedOutput: activated)
                if activated { r = ActivatedCellOutput(activated: last) }
            }
            // Outputs of two cells back have had their last reader (this cell's preprocessing).
            while let first = handedOn.first, first.cell <= i - 2 { release(handedOn.removeFirst().output, t) }
            guard i + 1 < cells.count || head != nil else { break }
            if r == nil {
                r = ActivatedCellOutput(activated: t.relu(last))
                // The concatenation is read by this ReLU alone, which keeps its own output (the last
                // cell's, under an auxiliary head there, is pooled below).
                if i + 1 < cells.count { t.release(last) }
            }
            if let head { aux = try head.forward(activated: try r!.tensor(t), ctx) }
            (r0, r1) = (r1, r!)
        }
        for h in handedOn { release(h.output, t) }
        return (try classifier.forward(try t.globalAvgPool(last), ctx), aux)
    }

    /// Releases the node states a cell handed on once all their readers are recorded: a state
    /// read by a backward rule stays (`reluConcatConv2d` reads them, `concatChannelsReLU` does not).
    private func release(_ r: ActivatedCellOutput, _ t: Tape) {
        for p in r.parts { t.release(p) }
    }

    /// The cells whose activations are recomputed for a batch of this size: `first` the cells
    /// before the first reduction (the largest maps), `auto` those when the kept activations
    /// would exceed 2 GB.
    public func recomputedCells(batch: Int) -> Set<Int> {
        recompute.recomputedCells(cells: cells.count, layers: config.layers) { estimatedActivationBytes(batch: batch) }
    }

    /// A rough size of the activations a training step keeps, on the high side: 2 tensors of a
    /// cell's state size per op (a separable convolution keeps its two 1x1 outputs, a dilated one
    /// one, see `Tape.release` and `depthwisePointwiseConv2d`), plus the node sums, the
    /// preprocessing's convolution and BatchNorm outputs and the cell output the next cells read (measured:
    /// about 20 per DARTS_V2 cell, this gives 28).
    public func estimatedActivationBytes(batch: Int) -> Int {
        var (h, w, c) = (config.inputShape[1], config.inputShape[2], config.channels)
        var total = 0
        for (i, cell) in cells.enumerated() {
            if SupernetConfig.isReduction(i, layers: config.layers) { h /= 2; w /= 2; c *= 2 }
            total += (2 * cell.ops.count + cell.ops.count / 2 + 4 + cell.multiplier) * batch * c * h * w * 4
        }
        return total
    }

    /// Parameters and BatchNorm buffers with the reference's state-dict names.
    public var state: NamedState {
        var s = NamedState()
        stem.collect(prefix: "stem", into: &s)
        for (i, c) in cells.enumerated() { c.collect(prefix: "cells.\(i)", into: &s) }
        auxiliaryHead?.collect(prefix: "auxiliary_head", into: &s)
        classifier.collect(prefix: "classifier", into: &s)
        return s
    }

    public var weights: [Variable] { state.parameters.map(\.variable) }

    /// Parameters outside the auxiliary head (the count papers report).
    public var parameterCountWithoutAuxiliary: Int {
        state.parameters.filter { !$0.name.hasPrefix("auxiliary_head.") }.reduce(0) { $0 + $1.variable.value.count }
    }
}
