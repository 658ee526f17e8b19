/// A cell node's sum with the BatchNorm that ends each convolution folded in.
///
/// A DARTS node sums two ops; a sep_conv or dil_conv ends with BatchNorm, whose output is read
/// only by that sum. Written as separate ops, each such BatchNorm writes its output, the sum reads
/// it back, and in backward the sum writes each input's gradient (the node's, scaled by drop
/// path's mask) for BatchNorm to read twice. Here the sum normalises on the fly
/// (x * scale + shift, per channel) and BatchNorm's backward reads the node's gradient with the
/// mask applied per sample: two full passes over each convolution's output fewer in each
/// direction, and neither the normalised output nor its gradient is ever materialised.

/// The BatchNorm applied to one term of `batchNormSum` (the arguments of `Tape.batchNorm`).
public struct BatchNormApplication {
    public var gamma: Variable?
    public var beta: Variable?
    public var statistics: BatchNormStatistics
    public var training: Bool
    public var updateStatistics: Bool
    public var reducer: StatisticsReducer?

    public init(gamma: Variable?, beta: Variable?, statistics: BatchNormStatistics, training: Bool, updateStatistics: Bool = true,
                reducer: StatisticsReducer? = nil) {
        self.gamma = gamma
        self.beta = beta
        self.statistics = statistics
        self.training = training
        self.updateStatistics = updateStatistics
        self.reducer = reducer
    }
}

extension BatchNormApplication {
    /// gamma and beta where present: inputs of the op that applies this BatchNorm.
    var parameters: [Variable] { [gamma, beta].compactMap { $0 } }

    /// Whether its backward, on input x, has a gradient to compute.
    func needsBackward(_ x: Variable) -> Bool { x.requiresGrad || gamma?.requiresGrad == true || beta?.requiresGrad == true }
}

extension BatchNormPlan {
    /// The plans of a sum's terms (nil where a term has no BatchNorm), made in input order, as the
    /// separate BatchNorms would run (running averages, reductions).
    static func plans(_ xs: [Variable], _ batchNorms: [BatchNormApplication?], op: String) throws -> [BatchNormPlan?] {
        try zip(xs, batchNorms).map { x, bn in
            try bn.map {
                try BatchNormPlan(x, gamma: $0.gamma, beta: $0.beta, statistics: $0.statistics, training: $0.training,
                                  updateStatistics: $0.updateStatistics, reducer: $0.reducer, op: op)
            }
        }
    }
}

extension Tape {
    /// y = sum over k of masks[k] * BN_k(xs[k]) per sample, where BN_k is `batchNorms[k]` (nil:
    /// the term is xs[k] itself) and a nil mask scales by 1. The same values, statistics and
    /// gradients as `maskedSum` (or `add`) of the separate `batchNorm` outputs, to the bit.
    ///
    /// xs: [N, C, H, W] of one shape; masks: [N] each.
    public func batchNormSum(_ xs: [Variable], batchNorms: [BatchNormApplication?], masks: [Tensor?]) throws -> Variable {
        try require(!xs.isEmpty && xs.count == masks.count && xs.count == batchNorms.count, "batchNormSum",
                    "\(xs.count) inputs, \(batchNorms.count) BatchNorms and \(masks.count) masks")
        return try nodeSum(xs, batchNorms: batchNorms, masks: masks, op: "batchNormSum")
    }

    /// `batchNormSum`, and `maskedSum` (no BatchNorm, any [N, ...] shape).
    func nodeSum(_ xs: [Variable], batchNorms: [BatchNormApplication?], masks: [Tensor?], op: String) throws -> Variable {
        let shape = xs[0].shape
        let normalises = batchNorms.contains { $0 != nil }
        try require(shape.count >= 1 && xs.allSatisfy { $0.shape == shape }, op, "shapes differ: \(xs.map(\.shape))")
        try require(!normalises || shape.count == 4, op, "inputs must be [N, C, H, W] for BatchNorm, got \(shape)")
        let n = shape[0]
        let (c, hw) = normalises ? (shape[1], shape[2] * shape[3]) : (1, shape.dropFirst().reduce(1, *))
        try require(masks.allSatisfy { $0 == nil || $0!.shape == [n] }, op, "masks must hold one value per sample (\(n))")
        let plans = try BatchNormPlan.plans(xs, batchNorms, op: op)
        let factors = masks.map { $0?.scalars }
        let count = n * c * hw, inner = c * hw
        let y = Tensor(uninitializedShape: shape) { out in
            let d = out.baseAddress!
            withPointers(xs.map(\.value.scalars)) { ps in
                Parallel.forChunks(n, work: count * xs.count) { _, samples in
                    for s in samples {
                        for (k, p) in ps.enumerated() {
                            let f = factors[k]?[s]
                            guard let plan = plans[k] else {
                                Self.scaleRun(p, by: f, into: d, s * inner..<(s + 1) * inner, accumulate: k > 0)
                                continue
                            }
                            for ch in 0..<c {
                                let (a, t, off) = (plan.scale[ch], plan.shift[ch], s * inner + ch * hw)
                                let (xr, yr) = (p + off, d + off)
                                // (x * scale + shift) rounded first, then the mask: BatchNorm's output, then the sum's product.
                                switch (k > 0, f) {
                                case (false, let f?): for j in 0..<hw { yr[j] = (xr[j] * a + t) * f }
                                case (false, nil): for j in 0..<hw { yr[j] = xr[j] * a + t }
                                case (true, let f?): for j in 0..<hw { yr[j] += (xr[j] * a + t) * f }
                                case (true, nil): for j in 0..<hw { yr[j] += xr[j] * a + t }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Backward reads the normalised terms' inputs only (a pooled or skipped term is not read).
        let read = zip(xs, plans).compactMap { $1 == nil ? nil : $0 }
        return output(y, inputs: xs + batchNorms.flatMap { $0?.parameters ?? [] }, op: op, readsOutput: false, inputsRead: read) { _, dy in
            let g = dy.baseAddress!
            for (k, x) in xs.enumerated() {
                if let plan = plans[k], let bn = batchNorms[k] {
                    guard bn.needsBackward(x) else { continue }
                    try plan.backward(x: x, gamma: bn.gamma, beta: bn.beta, dy: g, factors: factors[k], relu: false)
                } else if x.requiresGrad {
                    x.writeOrAccumulateGrad { dx, accumulate in
                        let d = dx.baseAddress!
                        Parallel.forChunks(n, work: count) { _, samples in
                            for s in samples {
                                Self.scaleRun(g, by: factors[k]?[s], into: d, s * inner..<(s + 1) * inner, accumulate: accumulate)
                            }
                        }
                    }
                }
            }
        }
    }
}
