extension Tape {
    /// y = depthwiseConv(ReLU(x), w): the ReLU that opens DARTS's sep_conv and dil_conv, fused into
    /// a stride-1 "same" depthwise convolution. The ReLU is applied while each plane is copied into
    /// the kernel's padded scratch, and its backward is a select on x as the input gradient is
    /// stored, so ReLU(x) is never materialised: one pass over x and one over dx fewer, and one
    /// activation less kept for backward. Results are bit-identical to `conv2d(relu(x), w)`.
    ///
    /// x: [N, C, H, W], w: [C, 1, K, K] with 2 x padding = (K - 1) x dilation. Other geometries
    /// (stride 2, even kernels) run the two ops.
    public func reluDepthwiseConv2d(_ x: Variable, _ w: Variable, padding: Int, dilation: Int = 1) throws -> Variable {
        try require(x.shape.count == 4, "reluDepthwiseConv2d", "input must be [N, C, H, W], got \(x.shape)")
        let g = try ConvGeometry(input: x.shape, weight: w.shape, stride: 1, padding: padding, dilation: dilation, groups: x.shape[1])
        guard let padded = Conv2dKernels.DepthwisePadded(g) else {
            return try conv2d(try relu(x), w, padding: padding, dilation: dilation, groups: x.shape[1])
        }
        multiplyAccumulates += g.macs
        let y = Tensor(uninitializedShape: [g.batch, g.outChannels, g.outHeight, g.outWidth]) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                w.value.scalars.withUnsafeBufferPointer { wp in
                    padded.convolvePlanes(g, xp.baseAddress!, w: wp.baseAddress!, flipped: false, into: out.baseAddress!,
                                          accumulate: false, relu: true)
                }
            }
        }
        return output(y, inputs: [x, w], op: "relu+conv2d depthwise", readsOutput: false) { _, dy in
            let dyp = dy.baseAddress!
            x.value.scalars.withUnsafeBufferPointer { xp in
                let xb = xp.baseAddress!
                if x.requiresGrad {
                    x.writeOrAccumulateGrad { dx, accumulate in
                        w.value.scalars.withUnsafeBufferPointer { wp in
                            padded.convolvePlanes(g, dyp, w: wp.baseAddress!, flipped: true, into: dx.baseAddress!, accumulate: accumulate,
                                                  gate: xb)
                        }
                    }
                }
                if w.requiresGrad {
                    w.accumulateGrad { dw in padded.weightGradPlanes(g, x: xb, dy: dyp, dw: dw.baseAddress!, relu: true) }
                }
            }
        }
    }
}
