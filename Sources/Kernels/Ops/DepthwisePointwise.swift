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
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let gd = try ConvGeometry(input: x.shape, weight: wd.shape, stride: 1, padding: padding, dilation: dilation, groups: x.shape[1])
        let gp = try ConvGeometry(input: [gd.batch, gd.outChannels, gd.outHeight, gd.outWidth], weight: wp.shape, stride: 1, padding: 0, dilation: 1, groups: 1)
        guard let padded = Conv2dKernels.DepthwisePadded(gd), gp.isPointwise else {
            let d = reluInput ? try reluDepthwiseConv2d(x, wd, padding: padding, dilation: dilation)
                : try conv2d(x, wd, padding: padding, dilation: dilation, groups: x.shape[1])
            return try conv2d(d, wp)
        }
        let fused = Conv2dKernels.DepthwisePointwise(depthwise: gd, pointwise: gp, padded: padded, relu: reluInput)
        multiplyAccumulates += gd.macs + gp.macs
        let y = Tensor(uninitializedShape: [gp.batch, gp.outChannels, gp.outHeight, gp.outWidth]) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                wd.value.scalars.withUnsafeBufferPointer { dp in
                    wp.value.scalars.withUnsafeBufferPointer { pp in
                        fused.forward(x: xp.baseAddress!, wd: dp.baseAddress!, wp: pp.baseAddress!, y: out.baseAddress!)
                    }
                }
            }
        }
        return output(y, inputs: [x, wd, wp], op: op, readsOutput: false) { _, dy in
            let xValue = x.valueForBackward()
            func run(_ dx: UnsafeMutablePointer<Float>?, _ accumulate: Bool, _ dwd: UnsafeMutablePointer<Float>?,
                     _ dwp: UnsafeMutablePointer<Float>?) {
                xValue.scalars.withUnsafeBufferPointer { xp in
                    wd.value.scalars.withUnsafeBufferPointer { dp in
                        wp.value.scalars.withUnsafeBufferPointer { pp in
                            fused.backward(x: xp.baseAddress!, wd: dp.baseAddress!, wp: pp.baseAddress!, dy: dy.baseAddress!,
                                           dx: dx, accumulate: accumulate, dwd: dwd, dwp: dwp)
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
            if x.requiresGrad {
                x.writeOrAccumulateGrad { dx, accumulate in withWeightGradients { run(dx.baseAddress!, accumulate, $0, $1) } }
            } else if wd.requiresGrad || wp.requiresGrad {
                withWeightGradients { run(nil, false, $0, $1) }
            }
        }
    }
}

extension Conv2dKernels {
    /// The kernels of `Tape.depthwisePointwiseConv2d`.
    struct DepthwisePointwise {
        let depthwise: ConvGeometry, pointwise: ConvGeometry
        let padded: DepthwisePadded
        /// The depthwise convolution reads ReLU(x).
        let relu: Bool

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
                padded.pad(x + (n * c + ch) * hw, into: s, relu: relu)
                padded.convolve(s, w: wd + ch * taps, flipped: false, into: d + ch * hw, accumulate: false)
            }
        }

        /// The pointwise product's GEMM, as `Conv2dKernels.forward` runs it per sample.
        @inline(__always)
        private func pointwiseSample(_ d: UnsafePointer<Float>, wp: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
            BLAS.sgemm(m: pointwise.outChannels, n: plane, k: channels, a: wp, lda: channels, b: d, ldb: plane, c: y, ldc: plane)
        }

        func forward(x: UnsafePointer<Float>, wd: UnsafePointer<Float>, wp: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
            let (n, outPlane) = (depthwise.batch, pointwise.outChannels * plane)
            ScratchPool.shared.withBuffers(Parallel.chunks(n, work: work), size: padded.scratchSize + channels * plane) { scratch in
                Parallel.forChunks(n, work: work) { worker, range in
                    let s = scratch[worker]
                    padded.clear(s)
                    for i in range {
                        let d = s + padded.scratchSize
                        depthwiseSample(i, x: x, wd: wd, s: s, d: d)
                        pointwiseSample(d, wp: wp, y: y + i * outPlane)
                    }
                }
            }
        }

        /// dx (written, or added with `accumulate`), dwd and dwp (added) from dy; any may be nil.
        func backward(x: UnsafePointer<Float>, wd: UnsafePointer<Float>, wp: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                      dx: UnsafeMutablePointer<Float>?, accumulate: Bool, dwd: UnsafeMutablePointer<Float>?,
                      dwp: UnsafeMutablePointer<Float>?) {
            let (n, c, hw, kk, cout) = (depthwise.batch, channels, plane, taps, pointwise.outChannels)
            let (inPlane, outPlane) = (c * hw, cout * hw)
            // Per sample: the padded plane, the depthwise output d, and its gradient dd.
            let sampleScratch = padded.scratchSize + 2 * inPlane
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
                        BLAS.sgemm(m: c, n: hw, k: cout, a: wt, lda: cout, b: dyi, ldb: hw, beta: 0, c: dd, ldc: hw)
                    }
                    for ch in 0..<c {
                        let at = ch * hw
                        // One padded copy of x's plane serves the rebuilt depthwise output (for the
                        // 1x1 weight gradient) and the depthwise weight gradient.
                        padded.pad(xi + at, into: s, relu: relu)
                        if dwp != nil { padded.convolve(s, w: wd + ch * kk, flipped: false, into: d + at, accumulate: false) }
                        if dwd != nil { padded.weightGrad(s, dy: dd + at, dw: sampleGrads + (i * c + ch) * kk) }
                        if let dx {
                            padded.pad(dd + at, into: s)
                            padded.convolve(s, w: wd + ch * kk, flipped: true, into: dx + i * inPlane + at, accumulate: accumulate,
                                            gate: relu ? xi + at : nil)
                        }
                    }
                    if dwp != nil { Conv2dKernels.pointwiseWeightGradient(pointwise, dy: dyi, x: d, into: partial, first: first) }
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
