/// 2-D convolution (cross-correlation, as PyTorch's `nn.Conv2d`) with stride, zero padding,
/// dilation and groups, and its backward pass.
///
/// Three paths, chosen by geometry:
/// - pointwise (1x1, stride 1, no padding, one group): one GEMM per sample, no im2col;
/// - depthwise (groups == in channels == out channels): a direct kernel whose inner loop runs over
///   a contiguous output row with the in-bounds range computed once per row, so no bounds checks;
/// - general: im2col per sample and group into reused scratch, then GEMM.
/// Samples (or channel planes) are split over `Parallel.threads`; weight gradients are summed over
/// a partition of the batch that does not depend on the thread count (`Parallel.forParts`).

/// The geometry of one convolution.
public struct ConvGeometry: Equatable, Sendable {
    public var batch, inChannels, height, width: Int
    public var outChannels, kernelH, kernelW: Int
    /// Stride and zero padding along the height; `strideW` and `paddingW` along the width (equal
    /// to these except for the reference's `conv_7x1_1x7`, whose convolutions are 1x7 with stride
    /// (1, s), padding (0, 3) and 7x1 with stride (s, 1), padding (3, 0)).
    public var stride, padding, dilation, groups: Int
    public var strideW, paddingW: Int

    public var outHeight: Int { (height + 2 * padding - dilation * (kernelH - 1) - 1) / stride + 1 }
    public var outWidth: Int { (width + 2 * paddingW - dilation * (kernelW - 1) - 1) / strideW + 1 }
    /// Same stride and padding along both axes (the depthwise kernels assume it).
    public var isIsotropic: Bool { stride == strideW && padding == paddingW }
    public var inPerGroup: Int { inChannels / groups }
    public var outPerGroup: Int { outChannels / groups }
    /// Rows of one group's im2col matrix: inPerGroup * kernelH * kernelW.
    public var patch: Int { inPerGroup * kernelH * kernelW }
    public var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 && isIsotropic && groups == 1 }
    public var isDepthwise: Bool { groups == inChannels && groups == outChannels && groups > 1 && isIsotropic }
    /// Multiply-accumulates of the forward pass over the whole batch.
    public var macs: Int { batch * outChannels * outHeight * outWidth * patch }

    /// Validates a conv of input `x` [N, Cin, H, W] with weight `w` [Cout, Cin/groups, KH, KW].
    /// A geometry known to be valid (built by kernels that share the conv machinery).
    init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int, kernelH: Int, kernelW: Int,
         stride: Int, padding: Int, dilation: Int, groups: Int) {
        self.batch = batch; self.inChannels = inChannels; self.height = height; self.width = width
        self.outChannels = outChannels; self.kernelH = kernelH; self.kernelW = kernelW
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
        self.strideW = stride; self.paddingW = padding
    }

    public init(input x: [Int], weight w: [Int], stride: Int, padding: Int, dilation: Int, groups: Int) throws {
        try self.init(input: x, weight: w, stride: (stride, stride), padding: (padding, padding), dilation: dilation, groups: groups)
    }

    /// stride and padding as (height, width).
    public init(input x: [Int], weight w: [Int], stride: (Int, Int), padding: (Int, Int), dilation: Int, groups: Int) throws {
        let op = "conv2d"
        try require(x.count == 4, op, "input must be [N, C, H, W], got \(x)")
        try require(w.count == 4, op, "weight must be [Cout, Cin/groups, KH, KW], got \(w)")
        try requireArgument(min(stride.0, stride.1) >= 1 && min(padding.0, padding.1) >= 0 && dilation >= 1 && groups >= 1, op,
                            "stride \(pair(stride)), padding \(pair(padding)), dilation \(dilation), groups \(groups)")
        try require(x[1] % groups == 0 && w[0] % groups == 0, op,
                    "input \(x) and weight \(w): channels not divisible by groups \(groups)")
        try require(w[1] == x[1] / groups, op,
                    "input \(x) has \(x[1]) channels but weight \(w) with groups \(groups) expects \(w[1] * groups)")
        self.batch = x[0]; self.inChannels = x[1]; self.height = x[2]; self.width = x[3]
        self.outChannels = w[0]; self.kernelH = w[2]; self.kernelW = w[3]
        self.stride = stride.0; self.padding = padding.0; self.dilation = dilation; self.groups = groups
        self.strideW = stride.1; self.paddingW = padding.1
        try require(outHeight >= 1 && outWidth >= 1, op,
                    "input \(x) is smaller than the dilated kernel \(w) with padding \(pair(padding))")
    }
}

extension ConvGeometry {
    /// Calls `body` once per kernel tap (ky, kx) with the tap's input offsets (input row =
    /// oy * stride + rowOffset, column = ox * stride + colOffset) and the output rows and columns
    /// whose reads fall inside the input (either range may be empty).
    @inline(__always)
    func forEachTap(_ body: (_ ky: Int, _ kx: Int, _ rowOffset: Int, _ colOffset: Int, _ rows: Range<Int>, _ cols: Range<Int>) -> Void) {
        for ky in 0..<kernelH {
            let rowOffset = ky * dilation - padding
            let rows = validRange(out: outHeight, in: height, stride: stride, offset: rowOffset)
            for kx in 0..<kernelW {
                let colOffset = kx * dilation - paddingW
                body(ky, kx, rowOffset, colOffset, rows, validRange(out: outWidth, in: width, stride: strideW, offset: colOffset))
            }
        }
    }
}

/// "s" for (s, s), else "(h, w)", for messages.
private func pair(_ p: (Int, Int)) -> String { p.0 == p.1 ? "\(p.0)" : "(\(p.0), \(p.1))" }

/// The output indices o in 0..<outSize whose input index o * stride + offset lies in 0..<inSize.
@inline(__always)
func validRange(out outSize: Int, in inSize: Int, stride: Int, offset: Int) -> Range<Int> {
    // o * s + offset >= 0  <=>  o >= ceil(-offset / s)
    let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    // o * s + offset <= inSize - 1  <=>  o <= floor((inSize - 1 - offset) / s)
    let top = inSize - 1 - offset
    let hi = top < 0 ? 0 : min(outSize, top / stride + 1)
    return lo < hi ? lo..<hi : 0..<0
}

extension Tape {
    /// y = conv2d(x, w) + b.
    ///
    /// x: [N, Cin, H, W], w: [Cout, Cin/groups, KH, KW], b: [Cout] -> [N, Cout, OH, OW].
    public func conv2d(_ x: Variable, _ w: Variable, bias b: Variable? = nil,
                       stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) throws -> Variable {
        try conv2d(x, w, bias: b, stride: (stride, stride), padding: (padding, padding), dilation: dilation, groups: groups)
    }

    /// y = conv2d(x, w) + b with stride and padding given as (height, width), as PyTorch's
    /// `nn.Conv2d(C, C, (1, 7), stride=(1, s), padding=(0, 3))`.
    public func conv2d(_ x: Variable, _ w: Variable, bias b: Variable? = nil,
                       stride: (Int, Int), padding: (Int, Int), dilation: Int = 1, groups: Int = 1) throws -> Variable {
        let g = try ConvGeometry(input: x.shape, weight: w.shape, stride: stride, padding: padding,
                                 dilation: dilation, groups: groups)
        if let b { try require(b.shape == [g.outChannels], "conv2d", "bias \(b.shape) vs \(g.outChannels) output channels") }
        multiplyAccumulates += g.macs
        // Every kernel path writes the whole output (GEMMs with beta 0, depthwise paths store or
        // zero first), so it starts uninitialised rather than zero-filled.
        // A pointwise convolution without bias (ReLUConvBN's, before BatchNorm) takes its output's
        // plane sums for BatchNorm's statistics.
        var sums = [Float](repeating: 0, count: g.isPointwise && b == nil ? 2 * g.batch * g.outChannels : 0)
        let y = Tensor(uninitializedShape: [g.batch, g.outChannels, g.outHeight, g.outWidth]) { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                w.value.scalars.withUnsafeBufferPointer { wp in
                    sums.withUnsafeMutableBufferPointer { sp in
                        Conv2dKernels.forward(g, x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!,
                                              planeSums: sp.isEmpty ? nil : sp.baseAddress)
                    }
                }
            }
            if let b { Conv2dKernels.addBias(g, b.value.scalars, y: yp.baseAddress!) }
        }
        var inputs = [x, w]
        if let b { inputs.append(b) }
        let kind = g.isPointwise ? "conv2d 1x1"
            : g.isDepthwise ? (Conv2dKernels.DepthwisePadded(g) != nil ? "conv2d depthwise"
                               : Conv2dKernels.DepthwiseStrided(g) != nil ? "conv2d depthwise stride 2" : "conv2d depthwise other")
            : "conv2d im2col"
        let out = output(y, inputs: inputs, op: kind, readsOutput: false) { _, dy in
            let dyp = dy.baseAddress!
            if g.isPointwise, b == nil {
                // Both gradients in one pass over the batch (`backwardPointwise`).
                let xValue = w.requiresGrad ? x.valueForBackward() : nil
                func run(_ dx: UnsafeMutablePointer<Float>?, _ accumulate: Bool) {
                    w.value.scalars.withUnsafeBufferPointer { wp in
                        guard let xValue else {
                            Conv2dKernels.backwardPointwise(g, dy: dyp, w: wp.baseAddress!, x: nil, dx: dx, accumulate: accumulate, dw: nil)
                            return
                        }
                        w.accumulateGrad { dw in
                            xValue.scalars.withUnsafeBufferPointer { xp in
                                Conv2dKernels.backwardPointwise(g, dy: dyp, w: wp.baseAddress!, x: xp.baseAddress!, dx: dx,
                                                                accumulate: accumulate, dw: dw.baseAddress!)
                            }
                        }
                    }
                }
                if x.requiresGrad {
                    x.writeOrAccumulateGrad { dx, accumulate in run(dx.baseAddress!, accumulate) }
                } else if w.requiresGrad {
                    run(nil, false)
                }
                return
            }
            if x.requiresGrad {
                if g.isPointwise || Conv2dKernels.DepthwisePadded(g) != nil || Conv2dKernels.DepthwiseStrided(g) != nil {
                    // One GEMM per sample (or one store per block of the padded depthwise
                    // kernel, one pass per plane of the strided one) writes or adds the whole
                    // gradient: no zero fill first.
                    x.writeOrAccumulateGrad { dx, accumulate in
                        w.value.scalars.withUnsafeBufferPointer { wp in
                            Conv2dKernels.backwardInput(g, dy: dyp, w: wp.baseAddress!, dx: dx.baseAddress!, accumulate: accumulate)
                        }
                    }
                } else {
                    x.accumulateGrad { dx in
                        w.value.scalars.withUnsafeBufferPointer { wp in
                            Conv2dKernels.backwardInput(g, dy: dyp, w: wp.baseAddress!, dx: dx.baseAddress!)
                        }
                    }
                }
            }
            if w.requiresGrad {
                let xValue = x.valueForBackward()
                w.accumulateGrad { dw in
                    xValue.scalars.withUnsafeBufferPointer { xp in
                        Conv2dKernels.backwardWeight(g, dy: dyp, x: xp.baseAddress!, dw: dw.baseAddress!)
                    }
                }
            }
            if let b, b.requiresGrad {
                b.accumulateGrad { db in Conv2dKernels.backwardBias(g, dy: dyp, db: db.baseAddress!) }
            }
        }
        out.planeSums = sums.isEmpty ? nil : sums
        return out
    }
}

/// The convolution kernels on raw buffers. All backward kernels accumulate (+=).
public enum Conv2dKernels {
    /// y = conv(x, w); y is overwritten. For a pointwise convolution, `planeSums` (when given)
    /// receives each output plane's sum and sum of squares (as `Variable.planeSums`), taken while
    /// the sample's output is in cache.
    public static func forward(_ g: ConvGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                               planeSums: UnsafeMutablePointer<Float>? = nil) {
        let inPlane = g.inChannels * g.height * g.width
        let outHW = g.outHeight * g.outWidth
        let outPlane = g.outChannels * outHW
        if g.isPointwise {
            Parallel.forEach(g.batch, work: g.macs) { n in
                pointwiseSample(g, x: x + n * inPlane, w: w, y: y + n * outPlane)
                if let planeSums { Reduce.planeSums(y, sample: n, channels: g.outChannels, plane: outHW, into: planeSums) }
            }
        } else if g.isDepthwise {
            if let padded = DepthwisePadded(g) {
                padded.convolvePlanes(g, x, w: w, flipped: false, into: y, accumulate: false)
                return
            }
            if let strided = DepthwiseStrided(g) {
                strided.forwardPlanes(g, x: x, w: w, y: y)
                return
            }
            y.update(repeating: 0, count: g.batch * outPlane)
            if let plan = DepthwisePlan(g) {
                let kk = g.kernelH * g.kernelW
                plan.withMasks { masks in
                    Parallel.forEach(g.batch * g.inChannels, work: g.macs) { nc in
                        plan.forward(x: x + nc * outHW, w: w + (nc % g.inChannels) * kk, y: y + nc * outHW, masks: masks)
                    }
                }
                return
            }
            Parallel.forEach(g.batch * g.inChannels, work: g.macs) { nc in
                depthwisePlane(g, x: x + nc * g.height * g.width, w: w + (nc % g.inChannels) * g.kernelH * g.kernelW,
                               y: y + nc * outHW)
            }
        } else {
            let colSize = g.patch * outHW
            ScratchPool.shared.withBuffers(Parallel.chunks(g.batch, work: g.macs), size: colSize) { cols in
                Parallel.forChunks(g.batch, work: g.macs) { worker, range in
                    let col = cols[worker]
                    for n in range {
                        for grp in 0..<g.groups {
                            im2col(g, x: x + n * inPlane + grp * g.inPerGroup * g.height * g.width, col: col)
                            product(m: g.outPerGroup, n: outHW, k: g.patch,
                                    a: w + grp * g.outPerGroup * g.patch, lda: g.patch,
                                    b: col, ldb: outHW,
                                    c: y + n * outPlane + grp * g.outPerGroup * outHW, ldc: outHW)
                        }
                    }
                }
            }
        }
    }

    /// y[n, c] += b[c].
    static func addBias(_ g: ConvGeometry, _ b: [Float], y: UnsafeMutablePointer<Float>) {
        let hw = g.outHeight * g.outWidth
        for n in 0..<g.batch {
            for c in 0..<g.outChannels {
                let p = y + (n * g.outChannels + c) * hw
                let bv = b[c]
                for i in 0..<hw { p[i] += bv }
            }
        }
    }

    /// dx += convᵀ(dy, w); with `accumulate: false` (pointwise and stride-1 "same" depthwise only)
    /// dx is overwritten instead.
    public static func backwardInput(_ g: ConvGeometry, dy: UnsafePointer<Float>, w: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                     accumulate: Bool = true) {
        precondition(accumulate || g.isPointwise || DepthwisePadded(g) != nil || DepthwiseStrided(g) != nil,
                     "conv2d backwardInput: overwriting is for pointwise, stride-1 'same' and stride-2 depthwise convolutions")
        let inPlane = g.inChannels * g.height * g.width
        let outHW = g.outHeight * g.outWidth
        let outPlane = g.outChannels * outHW
        if g.isPointwise {
            backwardPointwise(g, dy: dy, w: w, x: nil, dx: dx, accumulate: accumulate, dw: nil)
        } else if g.isDepthwise {
            if let padded = DepthwisePadded(g) {
                padded.convolvePlanes(g, dy, w: w, flipped: true, into: dx, accumulate: accumulate)
                return
            }
            if let strided = DepthwiseStrided(g) {
                strided.backwardInputPlanes(g, dy: dy, w: w, dx: dx, accumulate: accumulate)
                return
            }
            if let plan = DepthwisePlan(g) {
                let kk = g.kernelH * g.kernelW
                plan.withMasks { masks in
                    Parallel.forEach(g.batch * g.inChannels, work: g.macs) { nc in
                        plan.backwardInput(dy: dy + nc * outHW, w: w + (nc % g.inChannels) * kk, dx: dx + nc * outHW, masks: masks)
                    }
                }
                return
            }
            Parallel.forEach(g.batch * g.inChannels, work: g.macs) { nc in
                depthwisePlaneTransposed(g, dy: dy + nc * outHW, w: w + (nc % g.inChannels) * g.kernelH * g.kernelW,
                                         dx: dx + nc * g.height * g.width)
            }
        } else {
            let colSize = g.patch * outHW
            ScratchPool.shared.withBuffers(Parallel.chunks(g.batch, work: g.macs), size: colSize) { cols in
                Parallel.forChunks(g.batch, work: g.macs) { worker, range in
                    let col = cols[worker]
                    for n in range {
                        for grp in 0..<g.groups {
                            // col = W_gᵀ [patch, outPerGroup] x dY_g [outPerGroup, outHW]
                            BLAS.sgemm(transA: true, m: g.patch, n: outHW, k: g.outPerGroup,
                                       a: w + grp * g.outPerGroup * g.patch, lda: g.patch,
                                       b: dy + n * outPlane + grp * g.outPerGroup * outHW, ldb: outHW,
                                       c: col, ldc: outHW)
                            col2im(g, col: col, dx: dx + n * inPlane + grp * g.inPerGroup * g.height * g.width)
                        }
                    }
                }
            }
        }
    }

    /// dw += dy ⋆ x, summed over the batch.
    public static func backwardWeight(_ g: ConvGeometry, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>) {
        let inPlane = g.inChannels * g.height * g.width
        let outHW = g.outHeight * g.outWidth
        let outPlane = g.outChannels * outHW
        if g.isDepthwise {
            // One channel per task: no two tasks write the same weights.
            let kk = g.kernelH * g.kernelW
            if let padded = DepthwisePadded(g) {
                padded.weightGradPlanes(g, x: x, dy: dy, dw: dw)
                return
            }
            if let strided = DepthwiseStrided(g) {
                strided.weightGradPlanes(g, x: x, dy: dy, dw: dw)
                return
            }
            if let plan = DepthwisePlan(g) {
                plan.withMasks { masks in
                    Parallel.forEach(g.inChannels, work: g.macs) { c in
                        for n in 0..<g.batch {
                            let nc = n * g.inChannels + c
                            plan.weightGrad(x: x + nc * outHW, dy: dy + nc * outHW, dw: dw + c * kk, masks: masks)
                        }
                    }
                }
                return
            }
            Parallel.forEach(g.inChannels, work: g.macs) { c in
                for n in 0..<g.batch {
                    let nc = n * g.inChannels + c
                    depthwiseWeightGrad(g, x: x + nc * g.height * g.width, dy: dy + nc * outHW, dw: dw + c * kk)
                }
            }
            return
        }
        weightGradientParts(g, dw: dw, scratchSize: g.isPointwise ? pointwiseWeightScratch(g) : nil) { partial, n, first, _, col in
            if g.isPointwise {
                pointwiseWeightGradient(g, dy: dy + n * outPlane, x: x + n * inPlane, into: partial, first: first, scratch: col)
            } else {
                for grp in 0..<g.groups {
                    im2col(g, x: x + n * inPlane + grp * g.inPerGroup * g.height * g.width, col: col)
                    BLAS.sgemm(transB: true, m: g.outPerGroup, n: g.patch, k: outHW,
                               a: dy + n * outPlane + grp * g.outPerGroup * outHW, lda: outHW,
                               b: col, ldb: outHW,
                               beta: first ? 0 : 1, c: partial + grp * g.outPerGroup * g.patch, ldc: g.patch)
                }
            }
        }
    }

    /// A pointwise convolution's input and weight gradients in one pass over the batch: per
    /// sample, dx = Wᵀ dy (written, or added with `accumulate`) and then dW's partial += dy xᵀ
    /// while the sample's dy is still in cache (two passes over dy read it from memory twice).
    /// Either gradient may be skipped (nil). The results are those of `backwardInput` and
    /// `backwardWeight`, bit for bit.
    public static func backwardPointwise(_ g: ConvGeometry, dy: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                         x: UnsafePointer<Float>?, dx: UnsafeMutablePointer<Float>?, accumulate: Bool,
                                         dw: UnsafeMutablePointer<Float>?) {
        precondition(g.isPointwise && (dw == nil || x != nil), "backwardPointwise: a pointwise convolution, and x for the weight gradient")
        let hw = g.outHeight * g.outWidth
        let (inPlane, outPlane) = (g.inChannels * hw, g.outChannels * hw)
        backwardPointwise(g, dy: dy, w: w, inputGradient: dx.map { dx in
            { n, wt, _ in pointwiseInputGradient(g, dy: dy + n * outPlane, wt: wt, into: dx + n * inPlane, accumulate: accumulate) }
        }, dw: dw, input: { n, _ in x! + n * inPlane })
    }

    /// `backwardPointwise`'s pass over the batch, each sample's input gradient and input left to
    /// the caller: per sample n, inputGradient(n, wt, scratch) (wt: w transposed) and then, for
    /// dW's partial += dy xᵀ, input(n, scratch) (x's planes for sample n). `scratch` is the
    /// worker's, `scratchFloats` long (the weight gradient's own follows it).
    static func backwardPointwise(_ g: ConvGeometry, dy: UnsafePointer<Float>, w: UnsafePointer<Float>, scratchFloats: Int = 0,
                                  inputGradient: ((_ n: Int, _ wt: UnsafePointer<Float>, _ scratch: UnsafeMutablePointer<Float>) -> Void)?,
                                  dw: UnsafeMutablePointer<Float>?,
                                  input: (_ n: Int, _ scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float>) {
        let outPlane = g.outChannels * g.outHeight * g.outWidth
        // W transposed once ([Cin, Cout], a few KB): OpenBLAS's transposed-A path runs these
        // small-K products markedly slower than the plain one.
        ScratchPool.shared.withBuffers(1, size: g.inChannels * g.outChannels) { buffers in
            let wt = buffers[0]
            if inputGradient != nil { transpose(w, rows: g.outChannels, columns: g.inChannels, into: wt) }
            guard let dw else {
                guard let inputGradient else { return }
                ScratchPool.shared.withBuffers(Parallel.chunks(g.batch, work: g.macs), size: max(scratchFloats, 1)) { scratch in
                    Parallel.forChunks(g.batch, work: g.macs) { worker, samples in
                        for n in samples { inputGradient(n, wt, scratch[worker]) }
                    }
                }
                return
            }
            weightGradientParts(g, dw: dw, scratchSize: scratchFloats + pointwiseWeightScratch(g)) { partial, n, first, _, col in
                inputGradient?(n, wt, col)
                pointwiseWeightGradient(g, dy: dy + n * outPlane, x: input(n, col), into: partial, first: first, scratch: col + scratchFloats)
            }
        }
    }

    /// t = wᵀ for a rows x columns matrix w.
    @inline(__always)
    static func transpose(_ w: UnsafePointer<Float>, rows: Int, columns: Int, into t: UnsafeMutablePointer<Float>) {
        for o in 0..<rows { for i in 0..<columns { t[i * rows + o] = w[o * columns + i] } }
    }

    /// One sample's pointwise product y = w x (x, y: the sample's planes).
    @inline(__always)
    static func pointwiseSample(_ g: ConvGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let hw = g.outHeight * g.outWidth
        product(m: g.outChannels, n: hw, k: g.inChannels, a: w, lda: g.inChannels, b: x, ldb: hw, c: y, ldc: hw)
    }

    /// C = A B (or C += A B, `accumulate`), row-major: one sample's product of a 1x1 or im2col
    /// convolution, by `PanelProduct` where it takes the shape (bit-identical to OpenBLAS's FMA
    /// kernels there, and faster at these sizes), else by OpenBLAS.
    @inline(__always)
    static func product(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false) {
        if PanelProduct.preferred(n: n, k: k) {
            PanelProduct.multiply(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate)
        } else {
            BLAS.sgemm(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
        }
    }

    /// One sample's pointwise input gradient wᵀ dy, written into dx (or added, `accumulate`);
    /// wt: w transposed ([Cin, Cout]).
    @inline(__always)
    static func pointwiseInputGradient(_ g: ConvGeometry, dy: UnsafePointer<Float>, wt: UnsafePointer<Float>,
                                       into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let hw = g.outHeight * g.outWidth
        product(m: g.inChannels, n: hw, k: g.outChannels, a: wt, lda: g.outChannels, b: dy, ldb: hw,
                c: dx, ldc: hw, accumulate: accumulate)
    }

    /// One sample's pointwise weight gradient dy xᵀ (dy, x: the sample's planes), written into
    /// `partial` (`first`) or added: by `PanelProduct.multiplyTransposed` where it takes the shape
    /// (bit-identical to OpenBLAS's blocked path with its Cooperlake kernels, and faster; it needs
    /// `pointwiseWeightScratch(g)` floats of `scratch`), else by OpenBLAS.
    @inline(__always)
    static func pointwiseWeightGradient(_ g: ConvGeometry, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                        into partial: UnsafeMutablePointer<Float>, first: Bool, scratch: UnsafeMutablePointer<Float>) {
        let hw = g.outHeight * g.outWidth
        if PanelProduct.preferredTransposed(m: g.outChannels, n: g.inChannels, k: hw) {
            PanelProduct.multiplyTransposed(m: g.outChannels, n: g.inChannels, k: hw, a: dy, lda: hw, b: x, ldb: hw,
                                            c: partial, ldc: g.inChannels, accumulate: !first, scratch: scratch)
        } else {
            BLAS.sgemm(transB: true, m: g.outChannels, n: g.inChannels, k: hw, a: dy, lda: hw, b: x, ldb: hw,
                       beta: first ? 0 : 1, c: partial, ldc: g.inChannels)
        }
    }

    /// The scratch floats `pointwiseWeightGradient` needs per worker (none on OpenBLAS).
    static func pointwiseWeightScratch(_ g: ConvGeometry) -> Int {
        let hw = g.outHeight * g.outWidth
        return PanelProduct.preferredTransposed(m: g.outChannels, n: g.inChannels, k: hw)
            ? PanelProduct.transposedScratch(n: g.inChannels, k: hw) : 0
    }

    /// dw += the sum over samples of `sample(partial, n, first, worker, col)`, which writes
    /// (`first`) or adds sample n's weight gradient into `partial` (`col`: the worker's im2col
    /// scratch, for non-pointwise convolutions).
    ///
    /// Partial sums over parts of the batch, added in part order. The parts depend only on the
    /// batch size (not on the thread count), so dw comes out bit-identical for any `--threads`;
    /// threads only choose which parts they compute. Partials are padded to 64-byte strides so
    /// neighbouring parts written by different threads share no cache line.
    ///
    /// `scratchSize` overrides the size of `col` (the fused depthwise-pointwise backward's
    /// per-sample buffers), `prepare` runs once on each worker's before the samples; with `dw`
    /// nil the samples run and no gradient is added.
    static func weightGradientParts(_ g: ConvGeometry, dw: UnsafeMutablePointer<Float>?, scratchSize: Int? = nil, work: Int? = nil,
                                    prepare: ((UnsafeMutablePointer<Float>) -> Void)? = nil,
                                    _ sample: (_ partial: UnsafeMutablePointer<Float>, _ n: Int, _ first: Bool,
                                               _ worker: Int, _ col: UnsafeMutablePointer<Float>) -> Void) {
        weightGradientParts(g, outChannels: g.outChannels, dw: [dw], scratchSize: scratchSize, work: work, prepare: prepare, sample)
    }

    /// `weightGradientParts` for `dw.count` weights of g's shape but `outChannels / dw.count`
    /// output channels each, stacked in the partial (`Tape.factorizedReduce`'s two convolutions):
    /// dw[k] gets the partial's k-th piece; a nil dw[k] gets nothing.
    static func weightGradientParts(_ g: ConvGeometry, outChannels: Int, dw: [UnsafeMutablePointer<Float>?], scratchSize: Int? = nil,
                                    work: Int? = nil, prepare: ((UnsafeMutablePointer<Float>) -> Void)? = nil,
                                    _ sample: (_ partial: UnsafeMutablePointer<Float>, _ n: Int, _ first: Bool,
                                               _ worker: Int, _ col: UnsafeMutablePointer<Float>) -> Void) {
        let outHW = g.outHeight * g.outWidth
        let wCount = outChannels * g.patch
        let parts = Parallel.summationParts(g.batch)
        guard parts > 0 else { return }
        let work = work ?? g.macs
        let workers = Parallel.workers(parts: parts, work: work)
        let pitch = (wCount + 15) & ~15
        let colSize = scratchSize ?? (g.isPointwise ? 0 : g.patch * outHW)
        ScratchPool.shared.withBuffers(1, size: parts * pitch) { partialBuffer in
            let partials = partialBuffer[0]
            ScratchPool.shared.withBuffers(workers, size: max(colSize, 1)) { cols in
                if let prepare { cols.forEach(prepare) }
                Parallel.forParts(g.batch, parts: parts, work: work) { worker, part, range in
                    let partial = partials + part * pitch
                    // The part's first sample writes the partial, the others add to it.
                    for n in range { sample(partial, n, n == range.lowerBound, worker, cols[worker]) }
                }
            }
            guard dw.contains(where: { $0 != nil }) else { return }
            // dw += ((p0 + p1) + p2) + ...: the parts in order, whatever thread computed them.
            for part in 1..<parts {
                let p = partials + part * pitch
                for i in 0..<wCount { partials[i] += p[i] }
            }
            let piece = wCount / dw.count
            for (k, target) in dw.enumerated() {
                guard let target else { continue }
                let sum = partials + k * piece
                for i in 0..<piece { target[i] += sum[i] }
            }
        }
    }

    /// db[c] += sum of dy over batch and positions.
    public static func backwardBias(_ g: ConvGeometry, dy: UnsafePointer<Float>, db: UnsafeMutablePointer<Float>) {
        let hw = g.outHeight * g.outWidth
        for n in 0..<g.batch {
            for c in 0..<g.outChannels {
                let p = dy + (n * g.outChannels + c) * hw
                var s: Float = 0
                for i in 0..<hw { s += p[i] }
                db[c] += s
            }
        }
    }
}
