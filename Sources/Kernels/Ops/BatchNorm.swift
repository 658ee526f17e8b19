import Foundation

/// Batch normalisation over [N, C, H, W] per channel, as PyTorch's `nn.BatchNorm2d`.
///
/// Training mode normalises with the batch mean and biased variance, and updates the running
/// averages with momentum 0.1 using the unbiased variance. Eval mode uses the running averages.
/// The affine scale and shift are optional (DARTS search ops use `affine=False`).

/// Running statistics of one BatchNorm layer (buffers, not parameters).
public final class BatchNormStatistics {
    /// Running mean [C], initially 0.
    public var runningMean: Tensor
    /// Running variance [C], initially 1.
    public var runningVar: Tensor
    /// Number of training batches seen (PyTorch's `num_batches_tracked`).
    public var batchesTracked: Int = 0
    /// Cumulative moving average (PyTorch's `momentum=None`): batch k gets weight 1/(k+1), so after
    /// n batches the running values are the plain means of the n batch statistics. Used to
    /// recompute statistics after training.
    public var cumulativeAverage = false
    /// PyTorch's `track_running_stats`: when false, the layer normalises with the batch's
    /// statistics in eval mode too and never updates the running averages (they keep their
    /// initial values, so checkpoints still hold them).
    public var tracksRunningStatistics = true
    public let momentum: Float
    public let epsilon: Float

    public init(channels: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        runningMean = Tensor(shape: [channels], repeating: 0)
        runningVar = Tensor(shape: [channels], repeating: 1)
        self.momentum = momentum
        self.epsilon = epsilon
    }

    public var channels: Int { runningMean.count }

    /// Back to the initial state (mean 0, variance 1), e.g. before recomputing statistics.
    public func reset() {
        runningMean = Tensor(shape: runningMean.shape, repeating: 0)
        runningVar = Tensor(shape: runningVar.shape, repeating: 1)
        batchesTracked = 0
    }
}

/// Sums per-channel statistics over the ranks of a data-parallel job, in place (synchronised
/// BatchNorm); nil keeps per-rank statistics.
public typealias StatisticsReducer = (UnsafeMutableBufferPointer<Double>) throws -> Void

extension Tape {
    /// y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel.
    ///
    /// x: [N, C, H, W]; gamma, beta: [C] or nil (non-affine) -> [N, C, H, W].
    /// - Parameters:
    ///   - training: batch statistics (and a running-average update) when true, running averages
    ///     when false (batch statistics either way when `st.tracksRunningStatistics` is false).
    ///   - updateStatistics: in training mode, whether to update the running averages (false for
    ///     the extra forward passes of a second-order architecture step on an unrolled copy).
    ///   - reducer: in training mode, sums the batch statistics over ranks (forward: sum, sum of
    ///     squares and count; backward: sum of dy and of dy * xhat), so that N ranks with batch B/N
    ///     normalise and differentiate exactly as one rank with batch B.
    public func batchNorm(_ x: Variable, gamma: Variable? = nil, beta: Variable? = nil,
                          statistics st: BatchNormStatistics, training: Bool,
                          updateStatistics: Bool = true, reducer: StatisticsReducer? = nil) throws -> Variable {
        try batchNorm(x, gamma: gamma, beta: beta, statistics: st, training: training, updateStatistics: updateStatistics,
                      reducer: reducer, relu: false)
    }

    /// Per-plane (sum, second sum) pairs, planes split over threads: [2 * planes].
    static func planeSums(_ planes: Int, _ hw: Int, _ body: (Int) -> (Float, Float)) -> [Float] {
        [Float](unsafeUninitializedCapacity: 2 * planes) { out, count in
            let o = out.baseAddress!
            Parallel.forEach(planes, work: planeWork(planes * hw)) { p in
                let (a, b) = body(p)
                o[2 * p] = a; o[2 * p + 1] = b
            }
            count = 2 * planes
        }
    }

    /// BatchNorm's passes read and write every element several times; count that as work.
    @inline(__always)
    static func planeWork(_ elements: Int) -> Int { 4 * elements }

    /// relu(batchNorm(x)) as one op: one pass forward, the ReLU's mask applied inside BatchNorm's
    /// backward, and no BatchNorm output kept (SepConv's middle BN + ReLU).
    public func batchNormReLU(_ x: Variable, gamma: Variable? = nil, beta: Variable? = nil,
                              statistics st: BatchNormStatistics, training: Bool,
                              updateStatistics: Bool = true, reducer: StatisticsReducer? = nil) throws -> Variable {
        try batchNorm(x, gamma: gamma, beta: beta, statistics: st, training: training, updateStatistics: updateStatistics,
                      reducer: reducer, relu: true)
    }

    private func batchNorm(_ x: Variable, gamma: Variable?, beta: Variable?, statistics st: BatchNormStatistics, training: Bool,
                           updateStatistics: Bool, reducer: StatisticsReducer?, relu: Bool) throws -> Variable {
        let op = relu ? "batchNormReLU" : "batchNorm"
        let plan = try BatchNormPlan(x, gamma: gamma, beta: beta, statistics: st, training: training,
                                     updateStatistics: updateStatistics, reducer: reducer, op: op)
        let normalize = { (x: Tensor) -> Tensor in
            // Every plane is written below: no zero fill first.
            Tensor(uninitializedShape: x.shape) { yp in
                x.scalars.withUnsafeBufferPointer { xp in
                    let (xb, yb) = (xp.baseAddress!, yp.baseAddress!)
                    let (c, hw) = (plan.c, plan.hw)
                    Parallel.forEach(plan.n * c, work: Self.planeWork(plan.n * c * hw)) { p in
                        let (s, t, off) = (plan.scale[p % c], plan.shift[p % c], p * hw)
                        if relu {
                            for j in 0..<hw { yb[off + j] = max(xb[off + j] * s + t, 0) }
                        } else {
                            for j in 0..<hw { yb[off + j] = xb[off + j] * s + t }
                        }
                    }
                }
            }
        }
        let y = normalize(x.value)

        var inputs = [x]
        if let gamma { inputs.append(gamma) }
        if let beta { inputs.append(beta) }
        // Backward reads x, and recomputes the fused ReLU's mask from it (x * scale + shift > 0,
        // the forward's arithmetic): the output is not kept, and a consumer that needs it (the
        // next depthwise convolution's weight gradient) has it rebuilt (`release`).
        let out = output(y, inputs: inputs, op: op, readsOutput: false) { _, dy in
            try plan.backward(x: x, gamma: gamma, beta: beta, dy: dy.baseAddress!, factors: nil, relu: relu)
        }
        if relu { out.rebuild = { normalize(x.value) } }
        return out
    }
}

/// One BatchNorm application: the statistics it normalised with (the batch's, taken and reduced
/// over ranks here, or the running averages), as y = x * scale + shift per channel, and its
/// backward. Shared by `batchNorm`, `batchNormReLU` and `batchNormSum`.
struct BatchNormPlan {
    let n: Int, c: Int, hw: Int
    /// Per channel: the mean used and 1/sqrt(var + eps).
    let mean: [Float], invStd: [Float]
    /// y = x * scale + shift per channel (before a fused ReLU).
    let scale: [Float], shift: [Float]
    let gamma: [Float]?
    /// The (global) count of values per channel.
    let count: Double
    let batchStatistics: Bool
    /// Sums the backward's per-channel sums over ranks (training with synchronised statistics).
    let reducer: StatisticsReducer?

    /// Takes the statistics of x (training, or no running statistics) and updates the running
    /// averages when asked, as `Tape.batchNorm` documents.
    /// The batch statistics come from `input.planeSums` when its producer took them.
    init(_ input: Variable, gamma: Variable?, beta: Variable?, statistics st: BatchNormStatistics, training: Bool,
         updateStatistics: Bool, reducer: StatisticsReducer?, op: String) throws {
        let x = input.value
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        try require(st.channels == c, op, "input \(x.shape) has \(c) channels, statistics have \(st.channels)")
        if let gamma { try require(gamma.shape == [c], op, "gamma \(gamma.shape) vs \(c) channels") }
        if let beta { try require(beta.shape == [c], op, "beta \(beta.shape) vs \(c) channels") }
        let reducer = training ? reducer : nil
        // Batch statistics in training, and always without running statistics.
        let batchStatistics = training || !st.tracksRunningStatistics
        let updateStatistics = updateStatistics && st.tracksRunningStatistics

        var mean = [Float](repeating: 0, count: c)
        var invStd = [Float](repeating: 0, count: c)
        var m = Double(n * hw)
        if batchStatistics {
            // [sum_0..c, sumsq_0..c, count]
            var sums = [Double](repeating: 0, count: 2 * c + 1)
            sums[2 * c] = m
            // Float sums per plane (vectorised, planes split over threads), then Double across the
            // planes of each channel in sample order (the same result for any thread count).
            let planes = input.planeSums ?? x.scalars.withUnsafeBufferPointer { xp in
                Tape.planeSums(n * c, hw) { p in Reduce.sumAndSquares(xp.baseAddress! + p * hw, hw) }
            }
            for ch in 0..<c {
                for i in 0..<n {
                    sums[ch] += Double(planes[2 * (i * c + ch)])
                    sums[c + ch] += Double(planes[2 * (i * c + ch) + 1])
                }
            }
            if let reducer { try sums.withUnsafeMutableBufferPointer { try reducer($0) } }
            m = sums[2 * c]
            try require(m > 1, op, "training needs more than one value per channel, input \(x.shape)")
            let mom: Float = st.cumulativeAverage ? 1 / Float(st.batchesTracked + 1) : st.momentum
            for ch in 0..<c {
                let mD = sums[ch] / m
                let vD = max(sums[c + ch] / m - mD * mD, 0)
                mean[ch] = Float(mD)
                invStd[ch] = 1 / (Float(vD) + st.epsilon).squareRoot()
                if updateStatistics {
                    st.runningMean.scalars[ch] = (1 - mom) * st.runningMean.scalars[ch] + mom * Float(mD)
                    st.runningVar.scalars[ch] = (1 - mom) * st.runningVar.scalars[ch] + mom * Float(vD * m / (m - 1))
                }
            }
            if updateStatistics { st.batchesTracked += 1 }
        } else {
            for ch in 0..<c {
                mean[ch] = st.runningMean.scalars[ch]
                invStd[ch] = 1 / (st.runningVar.scalars[ch] + st.epsilon).squareRoot()
            }
        }

        let gammaV = gamma?.value.scalars
        var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            scale[ch] = invStd[ch] * (gammaV?[ch] ?? 1)
            shift[ch] = (beta?.value.scalars[ch] ?? 0) - mean[ch] * scale[ch]
        }
        (self.n, self.c, self.hw) = (n, c, hw)
        (self.mean, self.invStd, self.scale, self.shift) = (mean, invStd, scale, shift)
        self.gamma = gammaV
        count = m
        self.batchStatistics = batchStatistics
        self.reducer = reducer
    }

    /// Plane p's sum(dy) and sum(dy * (x - mean)) (dy zeroed where a fused ReLU's output was
    /// not positive): the first pass of `backward` (without drop-path factors).
    @inline(__always)
    func planeSums(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, plane p: Int, relu: Bool) -> (Float, Float) {
        let ch = p % c
        return relu ? Reduce.sumAndCenteredDot(dy, x, mean: mean[ch], hw, gateScale: scale[ch], gateShift: shift[ch])
            : Reduce.sumAndCenteredDot(dy, x, mean: mean[ch], hw)
    }

    /// Accumulates the gradients of gamma and beta and writes or accumulates x's, given the
    /// output's gradient dy, with sample i's gradient scaled by factors[i] when given (drop path
    /// applied after BatchNorm: the same values as a materialised factor * dy) and, with `relu`,
    /// zeroed where the output was not positive (the mask recomputed from x with the forward's
    /// arithmetic, x * scale + shift > 0).
    ///
    /// `planeSums`, when given, holds what `planeSums(dy:x:plane:relu:)` returns for every plane
    /// (taken while dy was produced, still in cache).
    func backward(x: Variable, gamma: Variable?, beta: Variable?, dy: UnsafePointer<Float>, factors: [Float]?, relu: Bool,
                  planeSums precomputed: [Float]? = nil) throws {
        precondition(!relu || factors == nil, "BatchNorm's backward: a fused ReLU and drop-path factors together")
        precondition(precomputed == nil || factors == nil, "BatchNorm's backward: plane sums are taken without drop-path factors")
        let (n, c, hw) = (self.n, self.c, self.hw)
        let (mean, invStd, scale, shift) = (self.mean, self.invStd, self.scale, self.shift)
        // Per channel: sum(dy) and sum(dy * xhat) (local; summed over ranks for the input
        // gradient when synchronised).
        var sums = [Double](repeating: 0, count: 2 * c)
        let planes = precomputed ?? x.value.scalars.withUnsafeBufferPointer { xp in
            Tape.planeSums(n * c, hw) { p in
                let (g, xv) = (dy + p * hw, xp.baseAddress! + p * hw)
                if let factors {
                    let f = factors[p / c]
                    // A dropped sample's gradient is 0: it adds nothing.
                    return f == 0 ? (0, 0) : Reduce.sumAndCenteredDot(g, scaledBy: f, xv, mean: mean[p % c], hw)
                }
                return planeSums(dy: g, x: xv, plane: p, relu: relu)
            }
        }
        for ch in 0..<c {
            var a = 0.0, b = 0.0
            for i in 0..<n {
                a += Double(planes[2 * (i * c + ch)])
                b += Double(planes[2 * (i * c + ch) + 1])
            }
            sums[ch] = a; sums[c + ch] = b * Double(invStd[ch])
        }
        // gamma and beta get the local sums: the trainer averages parameter gradients over ranks.
        if let gamma, gamma.requiresGrad {
            gamma.accumulateGrad { g in for ch in 0..<c { g[ch] += Float(sums[c + ch]) } }
        }
        if let beta, beta.requiresGrad {
            beta.accumulateGrad { g in for ch in 0..<c { g[ch] += Float(sums[ch]) } }
        }
        guard x.requiresGrad else { return }
        if let reducer { try sums.withUnsafeMutableBufferPointer { try reducer($0) } }
        // Training: dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)), rewritten as
        // dx = k * dy + c1 * x + c0 so the inner loop is one fused linear combination.
        var coefficients = [Float](repeating: 0, count: 3 * c)
        for ch in 0..<c {
            let (mu, inv) = (mean[ch], invStd[ch])
            let k = (self.gamma?[ch] ?? 1) * inv
            var c1: Float = 0, c0: Float = 0
            if batchStatistics {
                let mdy = Float(sums[ch] / count)
                let mdx = Float(sums[c + ch] / count)
                c1 = -k * mdx * inv
                c0 = -k * mdy + k * mdx * inv * mu
            }
            coefficients[3 * ch] = k; coefficients[3 * ch + 1] = c1; coefficients[3 * ch + 2] = c0
        }
        x.writeOrAccumulateGrad { dx, accumulate in
            x.value.scalars.withUnsafeBufferPointer { xp in
                let (xb, dxb) = (xp.baseAddress!, dx.baseAddress!)
                Parallel.forEach(n * c, work: Tape.planeWork(n * c * hw)) { p in
                    let ch = p % c
                    let (k, c1, c0) = (coefficients[3 * ch], coefficients[3 * ch + 1], coefficients[3 * ch + 2])
                    let off = p * hw
                    let (d, g, xv) = (dxb + off, dy + off, xb + off)
                    if let factors {
                        let f = factors[p / c]
                        if accumulate {
                            for j in 0..<hw { d[j] += k * (g[j] * f) + c1 * xv[j] + c0 }
                        } else {
                            for j in 0..<hw { d[j] = k * (g[j] * f) + c1 * xv[j] + c0 }
                        }
                    } else if relu {
                        let (s, t) = (scale[ch], shift[ch])
                        if accumulate {
                            for j in 0..<hw { d[j] += k * (xv[j] * s + t > 0 ? g[j] : 0) + c1 * xv[j] + c0 }
                        } else {
                            for j in 0..<hw { d[j] = k * (xv[j] * s + t > 0 ? g[j] : 0) + c1 * xv[j] + c0 }
                        }
                    } else if accumulate {
                        for j in 0..<hw { d[j] += k * g[j] + c1 * xv[j] + c0 }
                    } else {
                        for j in 0..<hw { d[j] = k * g[j] + c1 * xv[j] + c0 }
                    }
                }
            }
        }
    }
}
