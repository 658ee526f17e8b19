import Kernels

/// Function-preserving widening of a supernet (`--channel-schedule`): the same network at a
/// larger initial channel count C', its weights carried over so that it computes exactly what the
/// narrow one did, in evaluation and in training mode.
///
/// The scheme: new channels start silent. Every tensor of width w (w = C, 2C, 4C or a multiple of
/// them) becomes width w' (the same multiple of C'); the old channels keep their values at fixed
/// positions and the new channels are exactly zero, layer after layer:
///
/// - a convolution's new output channels get zero weights from every input, so they compute 0;
///   depthwise convolutions read one channel each, so their new channels (which read zeros) keep
///   their fresh initialisation;
/// - a convolution's weights from new input channels keep their fresh initialisation: they
///   multiply zeros now and break the symmetry of the new channels once these move;
/// - BatchNorm's new channels get running mean 0, variance 1 (and, affine, gamma 1, beta 0), so a
///   zero channel normalises to 0 with running statistics ((0 - 0) / sqrt(1 + eps)) and with batch
///   statistics (mean 0, variance 0: 0 / sqrt(eps));
/// - pooling, ReLU, the identity, weighted sums and concatenation keep zeros zero;
/// - the classifier's weights from new features keep their fresh values (they multiply zeros).
///
/// So the logits are unchanged up to the order of float additions (the sums over input channels
/// gain exact zeros). Net2Net's copied channels (Chen, Goodfellow, Shlens 2016) would also keep the
/// function, but copies get identical gradients forever unless noise is added, which breaks the
/// exactness; silent channels differ from the first step through their distinct outgoing weights.
/// In training mode the first steps' gradients into a silent channel pass BatchNorm's
/// 1/sqrt(eps) of a zero-variance channel; the weight step's gradient clipping bounds them.
///
/// Positions: a cell's channels keep the old ones in two halves (old channel i < w/2 at i, the
/// others at w'/2 + i - w/2), because FactorizedReduce writes its two convolutions' outputs as
/// the two halves of its output; every state of a cell (preprocessed inputs, nodes, FactorizedReduce
/// skips) shares that layout, and a cell's output concatenates its nodes' layouts. The stem keeps
/// its old channels first. PC-DARTS's partial channels and channel shuffle do not commute with any
/// such layout, so its edges are refused.
extension SearchNetwork {
    /// This network at initial width `channels` (> the current one), computing the same function:
    /// same seed, edges and depth; fresh weights (the seed's initialisation stream at the new width)
    /// where the old network had none; the same architecture parameters (the same variables).
    ///
    /// - Returns: the wider network, and each old weight's widening (for carrying optimiser state).
    public func widened(to channels: Int) throws -> (network: SearchNetwork, weights: [WeightWidening]) {
        guard channels > config.channels else {
            throw SearchConfigError("a supernet of C=\(config.channels) can only be widened to more channels, not \(channels)")
        }
        var wide = config
        wide.channels = channels
        let network = try SearchNetwork(wide, seed: seed, makeEdge: makeEdge, edgeNormalisation: edgeNormalisation,
                                        architecture: architectureParameters)
        network.recompute = recompute
        network.activationFraction = activationFraction
        var plan = WideningPlan()
        let (c, c2) = (config.channels, channels)
        let stemWidth = config.stemMultiplier
        var prevPrev = ChannelLayout.prefix(stemWidth * c, stemWidth * c2)
        var prev = prevPrev
        plan.sequential(stem, network.stem, layout: prev, input: nil)
        var (cell, cell2) = (c, c2)
        for (old, new) in zip(cells, network.cells) {
            if old.reduction { cell *= 2; cell2 *= 2 }
            let inner = ChannelLayout.halves(cell, cell2)
            try plan.preprocess(old.preprocess0, new.preprocess0, input: prevPrev, output: inner)
            try plan.preprocess(old.preprocess1, new.preprocess1, input: prev, output: inner)
            for (a, b) in zip(old.edges, new.edges) { try plan.edge(a, b, layout: inner) }
            (prevPrev, prev) = (prev, ChannelLayout.blocks(inner, count: old.steps))
        }
        plan.weights.append(WeightWidening(old: classifier.weight, new: network.classifier.weight, rows: nil, columns: prev,
                                           silentRows: false))
        plan.weights.append(WeightWidening(old: classifier.bias, new: network.classifier.bias, rows: nil, columns: nil,
                                           silentRows: false))
        // Every tensor of the wide network gets its values from the plan, or keeps its fresh ones.
        for w in plan.weights { w.new.value = w.apply(w.old.value, onto: w.new.value) }
        for (old, new, layout) in plan.statistics {
            new.runningMean = layout.embed(old.runningMean, onto: new.runningMean)
            new.runningVar = layout.embed(old.runningVar, onto: new.runningVar)
            new.batchesTracked = old.batchesTracked
            new.cumulativeAverage = old.cumulativeAverage
            new.tracksRunningStatistics = old.tracksRunningStatistics
        }
        let (oldCount, newCount) = (state.parameters.count, network.state.parameters.count)
        guard plan.weights.count == oldCount, newCount == oldCount, plan.statistics.count == state.statistics.count else {
            throw SearchConfigError("widening covered \(plan.weights.count) of \(oldCount) weights and \(plan.statistics.count) of \(state.statistics.count) BatchNorm layers")
        }
        return (network, plan.weights)
    }
}

/// Where a tensor axis's old channels go in the wider tensor: `positions[i]` is old channel i's
/// new index; the other new channels are new.
public struct ChannelLayout: Equatable, Sendable {
    public let positions: [Int]
    /// The new width.
    public let width: Int

    /// Old channels first: i -> i.
    public static func prefix(_ w: Int, _ w2: Int) -> ChannelLayout {
        ChannelLayout(positions: Array(0..<w), width: w2)
    }

    /// In two halves: i -> i for i < w/2, else w2/2 + i - w/2 (FactorizedReduce's two outputs).
    public static func halves(_ w: Int, _ w2: Int) -> ChannelLayout {
        ChannelLayout(positions: (0..<w).map { $0 < w / 2 ? $0 : w2 / 2 + $0 - w / 2 }, width: w2)
    }

    /// `count` blocks of `inner`, concatenated (a cell's output, its nodes' states).
    public static func blocks(_ inner: ChannelLayout, count: Int) -> ChannelLayout {
        ChannelLayout(positions: (0..<count).flatMap { b in inner.positions.map { b * inner.width + $0 } },
                      width: count * inner.width)
    }

    /// The new channels: those no old channel goes to.
    public var newChannels: [Int] {
        var isOld = [Bool](repeating: false, count: width)
        for p in positions { isOld[p] = true }
        return (0..<width).filter { !isOld[$0] }
    }

    /// A vector [w] placed into `onto` [w2]: old values at their positions, `onto`'s elsewhere.
    public func embed(_ old: Tensor, onto: Tensor) -> Tensor {
        precondition(old.shape == [positions.count] && onto.shape == [width], "layout \(positions.count) -> \(width) on \(old.shape) -> \(onto.shape)")
        var t = onto
        for (i, p) in positions.enumerated() { t.scalars[p] = old.scalars[i] }
        return t
    }
}

/// How one weight tensor [rows, columns, ...] (a convolution's [out, in/groups, kh, kw], a linear
/// layer's [out, in], a vector [n]) widens: the old values go to their rows' and columns' new
/// positions (nil: the axis keeps its size), silent rows are zero.
public struct WeightWidening {
    public let old: Variable
    public let new: Variable
    public let rows: ChannelLayout?
    public let columns: ChannelLayout?
    /// Whether new rows are all zero (a convolution's new output channels); else they keep `onto`'s values.
    public let silentRows: Bool

    public init(old: Variable, new: Variable, rows: ChannelLayout?, columns: ChannelLayout?, silentRows: Bool) {
        self.old = old
        self.new = new
        self.rows = rows
        self.columns = columns
        self.silentRows = silentRows
    }

    /// old's values placed into `onto` (the wide tensor's fresh values, or zeros for optimiser state).
    public func apply(_ old: Tensor, onto: Tensor) -> Tensor {
        let (r, c) = (old.shape[0], old.shape.count > 1 ? old.shape[1] : 1)
        let (r2, c2) = (onto.shape[0], onto.shape.count > 1 ? onto.shape[1] : 1)
        let inner = old.count / max(r * c, 1)
        precondition(onto.count == r2 * c2 * inner && (rows?.width ?? r) == r2 && (columns?.width ?? c) == c2,
                     "widening \(old.shape) -> \(onto.shape) with rows \(rows?.width ?? r), columns \(columns?.width ?? c)")
        var t = onto
        t.scalars.withUnsafeMutableBufferPointer { out in
            old.scalars.withUnsafeBufferPointer { src in
                if silentRows, let rows {
                    for row in rows.newChannels { for j in 0..<(c2 * inner) { out[row * c2 * inner + j] = 0 } }
                }
                for i in 0..<r {
                    let ri = rows?.positions[i] ?? i
                    for j in 0..<c {
                        let cj = columns?.positions[j] ?? j
                        for k in 0..<inner { out[(ri * c2 + cj) * inner + k] = src[(i * c + j) * inner + k] }
                    }
                }
            }
        }
        return t
    }
}

/// The widenings of a network's weights and BatchNorm layers, collected by walking the old and the
/// new network side by side.
struct WideningPlan {
    var weights: [WeightWidening] = []
    var statistics: [(BatchNormStatistics, BatchNormStatistics, ChannelLayout)] = []

    /// A convolution from channels laid out as `input` (nil: an input axis that keeps its size,
    /// the image's) to channels laid out as `output`; a depthwise convolution has one input per
    /// group, and its new channels read zeros, so they keep their fresh weights.
    mutating func conv(_ a: Conv2dLayer, _ b: Conv2dLayer, input: ChannelLayout?, output: ChannelLayout) {
        let depthwise = a.groups > 1
        weights.append(WeightWidening(old: a.weight, new: b.weight, rows: output, columns: depthwise ? nil : input,
                                      silentRows: !depthwise))
    }

    mutating func batchNorm(_ a: BatchNormLayer, _ b: BatchNormLayer, layout: ChannelLayout) {
        if let g = a.gamma, let g2 = b.gamma, let be = a.beta, let be2 = b.beta {
            weights.append(WeightWidening(old: g, new: g2, rows: layout, columns: nil, silentRows: false))
            weights.append(WeightWidening(old: be, new: be2, rows: layout, columns: nil, silentRows: false))
        }
        statistics.append((a.statistics, b.statistics, layout))
    }

    /// Layers within one channel space (`layout`) whose first convolution reads `input` (nil: the
    /// image, which keeps its channels).
    mutating func sequential(_ a: Sequential, _ b: Sequential, layout: ChannelLayout, input: ChannelLayout?) {
        var source = input
        for (x, y) in zip(a.layers, b.layers) {
            if let x = x as? Conv2dLayer, let y = y as? Conv2dLayer {
                conv(x, y, input: source, output: layout)
                source = layout
            } else if let x = x as? BatchNormLayer, let y = y as? BatchNormLayer {
                batchNorm(x, y, layout: layout)
            }
        }
    }

    /// FactorizedReduce: each convolution writes one half of the output.
    mutating func factorizedReduce(_ a: FactorizedReduce, _ b: FactorizedReduce, input: ChannelLayout, output: ChannelLayout) {
        let half = ChannelLayout.prefix(a.conv1.weight.shape[0], b.conv1.weight.shape[0])
        conv(a.conv1, b.conv1, input: input, output: half)
        conv(a.conv2, b.conv2, input: input, output: half)
        batchNorm(a.bn, b.bn, layout: output)
    }

    /// A cell's preprocessing of one input (ReLUConvBN or FactorizedReduce).
    mutating func preprocess(_ a: Layer, _ b: Layer, input: ChannelLayout, output: ChannelLayout) throws {
        if let x = a as? FactorizedReduce, let y = b as? FactorizedReduce {
            factorizedReduce(x, y, input: input, output: output)
        } else if let x = a as? ReLUConvBN, let y = b as? ReLUConvBN {
            sequential(x.op, y.op, layout: output, input: input)
        } else {
            throw SearchConfigError("cannot widen a cell preprocessing of type \(type(of: a))")
        }
    }

    /// A mixed edge and its candidate ops, all within one channel space.
    mutating func edge(_ a: MixedEdge, _ b: MixedEdge, layout: ChannelLayout) throws {
        switch (a, b) {
        case let (x as MixedOp, y as MixedOp):
            for (p, q) in zip(x.ops, y.ops) {
                guard let p, let q else { continue }
                try op(p, q, layout: layout)
            }
        case let (x as OpDropoutEdge, y as OpDropoutEdge):
            try edge(x.mixed, y.mixed, layout: layout)
        case let (x as AuxiliarySkipEdge, y as AuxiliarySkipEdge):
            try edge(x.edge, y.edge, layout: layout)
            if let p = x.reduce, let q = y.reduce { factorizedReduce(p, q, input: layout, output: layout) }
        default:
            throw SearchConfigError("cannot widen a mixed edge of type \(type(of: a)) function-preservingly (PC-DARTS's channel shuffle mixes the channel positions)")
        }
    }

    /// One candidate op (input and output in `layout`).
    mutating func op(_ a: Layer, _ b: Layer, layout: ChannelLayout) throws {
        switch (a, b) {
        case let (x as PoolBatchNorm, y as PoolBatchNorm): batchNorm(x.bn, y.bn, layout: layout)
        case let (x as ReLUConvBN, y as ReLUConvBN): sequential(x.op, y.op, layout: layout, input: layout)
        case let (x as SepConv, y as SepConv): sequential(x.op, y.op, layout: layout, input: layout)
        case let (x as DilConv, y as DilConv): sequential(x.op, y.op, layout: layout, input: layout)
        case let (x as Conv7x1And1x7, y as Conv7x1And1x7): sequential(x.op, y.op, layout: layout, input: layout)
        case let (x as FactorizedReduce, y as FactorizedReduce): factorizedReduce(x, y, input: layout, output: layout)
        case (is Identity, is Identity), (is PoolLayer, is PoolLayer): break
        default: throw SearchConfigError("cannot widen an op of type \(type(of: a))")
        }
    }
}
