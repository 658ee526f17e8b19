/// A depthwise convolution followed by a 1x1 convolution (half of a DARTS sep_conv, or a
/// dil_conv before its BatchNorm), one sample at a time.
///
/// As two ops, the depthwise output crosses memory four times in forward (written, read by the
/// 1x1) and backward (its gradient written by the 1x1, read by both depthwise gradients), and it
/// is kept for the 1x1's weight gradient. Here each sample's depthwise output lives in a scratch
/// buffer while the 1x1 reads it (a sample is 16-150 KB at DARTS sizes: it stays in cache), and
/// backward rebuilds it per sample from the kept input, then computes the 1x1's gradients, and
/// the depthwise convolution's from the 1x1's input gradient still in cache. Per sample, backward
/// reads dy and x and writes dx; nothing of the middle value is kept between the passes.
///
/// Every sum is formed as the two ops form it (the same per-plane kernels, the same GEMM per
/// sample, the 1x1 weight gradient in the same batch parts, the depthwise weight gradient added
/// in sample order), so the results equal the two ops' to the bit, for any thread count.

extension Tape {
    /// y = conv2d(depthwise(x, wd), wp), or with `reluInput` depthwise(ReLU(x)) as
    /// `reluDepthwiseConv2d`: x [N, C, H, W], wd [C, 1, K, K] at stride 1 with "same" padding
    /// (2 x padding = (K - 1) x dilation), wp [Cout, C, 1, 1] -> [N, Cout, H, W]. Other depthwise
    /// geometries run the two ops.
    public func depthwisePointwiseConv2d(_ x: Variable, depthwise wd: Variable, pointwise wp: Variable, padding: Int,
                                         dilation: Int = 1, reluInput: Bool) throws -> Variable {
        let op = reluInput ? "relu+depthwise+1x1" : "depthwise+1x1"
        let (gd, gp, padded) = try depthwisePointwiseGeometry(x, wd, wp, padding: padding, dilation: dilation, op: op)
        guard let padded else {
            let d = reluInput ? try reluDepthwiseConv2d(x, wd, padding: padding, dilation: dilation)
                : try conv2d(x, wd, padding: padding, dilation: dilation, groups: x.shape[1])
            return try conv2d(d, wp)
        }
        let fused = Conv2dKernels.DepthwisePointwise(depthwise: gd, pointwise: gp, padded: padded, input: reluInput ? .relu : .plain)
        let (y, sums) = fused.forward(self, x: x, wd: wd, wp: wp)
        let out = output(y, inputs: [x, wd, wp], op: op, readsOutput: false) { _, dy in
            fused.backward(x: x, wd: wd, wp: wp, dy: dy.baseAddress!)
        }
        out.planeSums = sums
        return out
    }

    /// y = conv2d(depthwise(ReLU(batchNorm(x))), wp): the middle of a DARTS sep_conv (its first
    /// BatchNorm and ReLU, then its second depthwise and 1x1 convolutions) as one op.
    ///
    /// As `batchNormReLU` followed by `depthwisePointwiseConv2d`, that BatchNorm's output is
    /// written, read back by the depthwise convolution, and rebuilt in backward for its weight
    /// gradient. Here each plane is normalised while it is copied into the depthwise kernel's
    /// padded scratch, so the normalised tensor is never materialised; backward writes the
    /// gradient at the normalised values (as the depthwise op would) and runs BatchNorm's backward
    /// on it. The same statistics, running averages, values and gradients as the separate ops, to
    /// the bit. `bn` is the BatchNorm as applied (`Tape.batchNorm`'s arguments); shapes as
    /// `depthwisePointwiseConv2d`, other depthwise geometries run the separate ops.
    public func batchNormReLUDepthwisePointwiseConv2d(_ x: Variable, batchNorm bn: BatchNormApplication, depthwise wd: Variable,
                                                      pointwise wp: Variable, padding: Int, dilation: Int = 1) throws -> Variable {
        let op = "batchNormReLU+depthwise+1x1"
        let (gd, gp, padded) = try depthwisePointwiseGeometry(x, wd, wp, padding: padding, dilation: dilation, op: op)
        guard let padded else {
            let a = try batchNormReLU(x, gamma: bn.gamma, beta: bn.beta, statistics: bn.statistics, training: bn.training,
                                      updateStatistics: bn.updateStatistics, reducer: bn.reducer)
            let y = try depthwisePointwiseConv2d(a, depthwise: wd, pointwise: wp, padding: padding, dilation: dilation, reluInput: false)
            release(a)
            return y
        }
        let plan = try BatchNormPlan(x, gamma: bn.gamma, beta: bn.beta, statistics: bn.statistics, training: bn.training,
                                     updateStatistics: bn.updateStatistics, reducer: bn.reducer, op: op)
        let fused = Conv2dKernels.DepthwisePointwise(depthwise: gd, pointwise: gp, padded: padded,
                                                     input: .affineReLU(scale: plan.scale, shift: plan.shift))
        let (y, ySums) = fused.forward(self, x: x, wd: wd, wp: wp)
        let out = output(y, inputs: [x, wd, wp] + bn.parameters, op: op, readsOutput: false) { _, dy in
            guard bn.needsBackward(x) else {
                fused.backward(x: x, wd: wd, wp: wp, dy: dy.baseAddress!)
                return
            }
            // The gradient at the normalised values (before the ReLU's mask, which BatchNorm's
            // backward applies), written as the depthwise op writes its input's; BatchNorm's
            // per-plane sums of it are taken as each plane is written, while it is in cache.
            var sums = [Float](repeating: 0, count: 2 * plan.n * plan.c)
            let da = Tensor(uninitializedShape: x.shape) { d in
                sums.withUnsafeMutableBufferPointer { sp in
                    let sp = sp.baseAddress!
                    fused.backward(x: x, wd: wd, wp: wp, dy: dy.baseAddress!, into: d.baseAddress!) { p, g, xv in
                        (sp[2 * p], sp[2 * p + 1]) = plan.planeSums(dy: g, x: xv, plane: p, relu: true)
                    }
                }
            }
            try da.scalars.withUnsafeBufferPointer { d in
                try plan.backward(x: x, gamma: bn.gamma, beta: bn.beta, dy: d.baseAddress!, factors: nil, relu: true, planeSums: sums)
            }
        }
        out.planeSums = ySums
        return out
    }
}

extension Tape {
    /// The depthwise and pointwise geometries of a fused depthwise-pointwise op, and the padded
    /// depthwise kernel when the fused kernels apply (nil: run the separate ops).
    private func depthwisePointwiseGeometry(_ x: Variable, _ wd: Variable, _ wp: Variable, padding: Int, dilation: Int,
                                            op: String) throws -> (ConvGeometry, ConvGeometry, Conv2dKernels.DepthwisePadded?) {
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let gd = try ConvGeometry(input: x.shape, weight: wd.shape, stride: 1, padding: padding, dilation: dilation, groups: x.shape[1])
        let gp = try ConvGeometry(input: [gd.batch, gd.outChannels, gd.outHeight, gd.outWidth], weight: wp.shape, stride: 1,
                                  padding: 0, dilation: 1, groups: 1)
        return (gd, gp, gp.isPointwise ? Conv2dKernels.DepthwisePadded(gd) : nil)
    }
}

extension Conv2dKernels.DepthwisePointwise {
    /// The op's output and its plane sums (`Variable.planeSums`), counting its multiply-adds on
    /// `tape`.
    func forward(_ tape: Tape, x: Variable, wd: Variable, wp: Variable) -> (Tensor, [Float]) {
        tape.multiplyAccumulates += depthwise.macs + pointwise.macs
        var sums = [Float](repeating: 0, count: 2 * pointwise.batch * pointwise.outChannels)
        let y = Tensor(uninitializedShape: [pointwise.batch, pointwise.outChannels, pointwise.outHeight, pointwise.outWidth]) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                wd.value.scalars.withUnsafeBufferPointer { dp in
                    wp.value.scalars.withUnsafeBufferPointer { pp in
                        sums.withUnsafeMutableBufferPointer { sp in
                            forward(x: xp.baseAddress!, wd: dp.baseAddress!, wp: pp.baseAddress!, y: out.baseAddress!, planeSums: sp.baseAddress!)
                        }
                    }
                }
            }
        }
        return (y, sums)
    }

    /// The backward rule: x's gradient (into x's, or written into `target`), wd's and wp's, each
    /// where wanted.
    ///
    /// With `gradientPlane` (and a target), gradientPlane(p, dx, x) runs on each plane p
    /// (sample-major) of x's gradient once it is written: dx and x are that plane's.
    func backward(x: Variable, wd: Variable, wp: Variable, dy: UnsafePointer<Float>,
                  into target: UnsafeMutablePointer<Float>? = nil,
                  gradientPlane: ((_ plane: Int, _ dx: UnsafePointer<Float>, _ x: UnsafePointer<Float>) -> Void)? = nil) {
        let xValue = x.valueForBackward()
        func run(_ dx: UnsafeMutablePointer<Float>?, _ accumulate: Bool, _ dwd: UnsafeMutablePointer<Float>?,
                 _ dwp: UnsafeMutablePointer<Float>?) {
            xValue.scalars.withUnsafeBufferPointer { xp in
                wd.value.scalars.withUnsafeBufferPointer { dp in
                    wp.value.scalars.withUnsafeBufferPointer { pp in
                        backward(x: xp.baseAddress!, wd: dp.baseAddress!, wp: pp.baseAddress!, dy: dy,
                                 dx: dx, accumulate: accumulate, dwd: dwd, dwp: dwp, gradientPlane: gradientPlane)
                    }
                }
            }
        }
        func withWeightGradients(_ body: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void) {
            func pointwise(_ dwd: UnsafeMutablePointer<Float>?) {
                if wp.requiresGrad { wp.accumulateGrad { body(dwd, $0.baseAddress!) } } else { body(dwd, nil) }
            }
            if wd.requiresGrad { wd.accumulateGrad { pointwise($0.baseAddress!) } } else { pointwise(nil) }
        }
        if let target {
            withWeightGradients { run(target, false, $0, $1) }
        } else if x.requiresGrad {
            x.writeOrAccumulateGrad { dx, accumulate in withWeightGradients { run(dx.baseAddress!, accumulate, $0, $1) } }
        } else if wd.requiresGrad || wp.requiresGrad {
            withWeightGradients { run(nil, false, $0, $1) }
        }
    }
}

extension Conv2dKernels {
    /// The kernels of `Tape.depthwisePointwiseConv2d`.
    struct DepthwisePointwise {
        let depthwise: ConvGeometry, pointwise: ConvGeometry
        let padded: DepthwisePadded
        /// What the depthwise convolution reads of x.
        let input: Input

        enum Input {
            /// x itself.
            case plain
            /// ReLU(x); its input gradient is masked where x is not positive.
            case relu
            /// ReLU(x * scale + shift) per channel (BatchNorm and ReLU; the input gradient is the
            /// one at those values, unmasked: BatchNorm's backward masks it).
            case affineReLU(scale: [Float], shift: [Float])
        }

        /// Copies channel ch's plane p of x, as the depthwise convolution reads it, into the
        /// padded scratch s.
        @inline(__always)
        private func pad(_ p: UnsafePointer<Float>, channel ch: Int, into s: UnsafeMutablePointer<Float>) {
            switch input {
            case .plain: padded.pad(p, into: s)
            case .relu: padded.pad(p, into: s, relu: true)
            case .affineReLU(let scale, let shift): padded.pad(p, into: s, scale: scale[ch], shift: shift[ch])
            }
        }

        var channels: Int { depthwise.inChannels }
        var plane: Int { depthwise.height * depthwise.width }
        var taps: Int { padded.kernel * padded.kernel }
        var work: Int { depthwise.macs + pointwise.macs }

        /// Sample n's depthwise output into d (C planes), through the padded scratch s.
        @inline(__always)
        private func depthwiseSample(_ n: Int, x: UnsafePointer<Float>, wd: UnsafePointer<Float>, s: UnsafeMutablePointer<Float>,
                                     d: UnsafeMutablePointer<Float>) {
            let (c, hw) = (channels, plane)
            for ch in 0..<c {
                pad(x + (n * c + ch) * hw, channel: ch, into: s)
                padded.convolve(s, w: wd + ch * taps, flipped: false, into: d + ch * hw, accumulate: false)
            }
        }

        /// y, and its plane sums into `planeSums` ([2 x N x Cout], as `Variable.planeSums`).
        func forward(x: UnsafePointer<Float>, wd: UnsafePointer<Float>, wp: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                     planeSums: UnsafeMutablePointer<Float>) {
            let (n, outPlane) = (depthwise.batch, pointwise.outChannels * plane)
            ScratchPool.shared.withBuffers(Parallel.chunks(n, work: work), size: padded.scratchSize + channels * plane) { scratch in
                Parallel.forChunks(n, work: work) { worker, range in
                    let s = scratch[worker]
                    padded.clear(s)
                    for i in range {
                        let d = s + padded.scratchSize
                        depthwiseSample(i, x: x, wd: wd, s: s, d: d)
                        Conv2dKernels.pointwiseSample(pointwise, x: d, w: wp, y: y + i * outPlane)
                        // BatchNorm's statistics, while the sample's output is in cache.
                        Reduce.planeSums(y, sample: i, channels: pointwise.outChannels, plane: plane, into: planeSums)
                    }
                }
            }
        }

        /// dx (written, or added with `accumulate`), dwd and dwp (added) from dy; any may be nil.
        func backward(x: UnsafePointer<Float>, wd: UnsafePointer<Float>, wp: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                      dx: UnsafeMutablePointer<Float>?, accumulate: Bool, dwd: UnsafeMutablePointer<Float>?,
                      dwp: UnsafeMutablePointer<Float>?,
                      gradientPlane: ((_ plane: Int, _ dx: UnsafePointer<Float>, _ x: UnsafePointer<Float>) -> Void)? = nil) {
            precondition(gradientPlane == nil || (dx != nil && !accumulate), "gradientPlane reads a written input gradient")
            let (n, c, hw, kk, cout) = (depthwise.batch, channels, plane, taps, pointwise.outChannels)
            let (inPlane, outPlane) = (c * hw, cout * hw)
            let gated = if case .relu = input { true } else { false }
            // Per sample: the padded plane, the depthwise output d, its gradient dd, and the 1x1
            // weight gradient's scratch.
            let weightScratch = dwp == nil ? 0 : Conv2dKernels.pointwiseWeightScratch(pointwise)
            let sampleScratch = padded.scratchSize + 2 * inPlane + weightScratch
            // The depthwise weight gradient per sample ([N][C * K * K]), added in sample order after.
            let perSample = dwd == nil ? 0 : n * c * kk
            ScratchPool.shared.withBuffers(2, size: max(c * cout, perSample, 1)) { buffers in
                let (wt, sampleGrads) = (buffers[0], buffers[1])
                Conv2dKernels.transpose(wp, rows: cout, columns: c, into: wt)
                if dwd != nil { sampleGrads.update(repeating: 0, count: perSample) }
                Conv2dKernels.weightGradientParts(pointwise, dw: dwp, scratchSize: sampleScratch, work: 3 * work,
                                                  prepare: padded.clear) { partial, i, first, _, s in
                    let (d, dd) = (s + padded.scratchSize, s + padded.scratchSize + inPlane)
                    let (dyi, xi) = (dy + i * outPlane, x + i * inPlane)
                    if dx != nil || dwd != nil {
                        Conv2dKernels.pointwiseInputGradient(pointwise, dy: dyi, wt: wt, into: dd, accumulate: false)
                    }
                    for ch in 0..<c {
                        let at = ch * hw
                        // One padded copy of x's plane serves the rebuilt depthwise output (for the
                        // 1x1 weight gradient) and the depthwise weight gradient.
                        pad(xi + at, channel: ch, into: s)
                        if dwp != nil { padded.convolve(s, w: wd + ch * kk, flipped: false, into: d + at, accumulate: false) }
                        if dwd != nil { padded.weightGrad(s, dy: dd + at, dw: sampleGrads + (i * c + ch) * kk) }
                        if let dx {
                            padded.pad(dd + at, into: s)
                            let plane = dx + i * inPlane + at
                            padded.convolve(s, w: wd + ch * kk, flipped: true, into: plane, accumulate: accumulate,
                                            gate: gated ? xi + at : nil)
                            gradientPlane?(i * c + ch, plane, xi + at)
                        }
                    }
                    if dwp != nil {
                        Conv2dKernels.pointwiseWeightGradient(pointwise, dy: dyi, x: d, into: partial, first: first, scratch: dd + inPlane)
                    }
                }
                if let dwd {
                    for i in 0..<n {
                        let g = sampleGrads + i * c * kk
                        for k in 0..<(c * kk) { dwd[k] += g[k] }
                    }
                }
            }
        }
    }
}
