/// Dropout and drop-path: multiplicative masks drawn from the run's dropout stream.
///
/// Both scale kept values by 1/(1-p) (inverted dropout), so evaluation needs no rescaling and
/// simply skips the op. Drop path (FractalNet, used by DARTS evaluation) draws one mask value per
/// sample and applies it to the whole sample.

extension Tape {
    /// Elementwise dropout with drop probability p in [0, 1).
    public func dropout(_ x: Variable, p: Float, generator: inout RandomGenerator) throws -> Variable {
        try requireArgument(p >= 0 && p < 1, "dropout", "probability \(p) outside [0, 1)")
        var mask = Tensor(shape: x.shape)
        let keep = 1 - p
        mask.scalars.withUnsafeMutableBufferPointer { m in
            for i in m.indices { m[i] = generator.uniform() < keep ? 1 / keep : 0 }
        }
        return multiplyByMask(x, mask: mask, perSample: false)
    }

    /// Drop path: each sample of x [N, ...] is zeroed with probability p, else scaled by 1/(1-p).
    public func dropPath(_ x: Variable, p: Float, generator: inout RandomGenerator) throws -> Variable {
        try requireArgument(p >= 0 && p < 1, "dropPath", "probability \(p) outside [0, 1)")
        try require(x.shape.count >= 1, "dropPath", "input must have a batch dimension, got \(x.shape)")
        return multiplyByMask(x, mask: try dropPathMask(samples: x.shape[0], p: p, generator: &generator), perSample: true)
    }

    /// The per-sample mask of drop path for a batch of n: each sample 0 with probability p, else
    /// 1/(1-p), one draw per sample in order (the draws `dropPath` makes).
    public func dropPathMask(samples n: Int, p: Float, generator: inout RandomGenerator) throws -> Tensor {
        try requireArgument(p >= 0 && p < 1, "dropPath", "probability \(p) outside [0, 1)")
        let keep = 1 - p
        var mask = Tensor(shape: [n])
        for i in 0..<n { mask.scalars[i] = generator.uniform() < keep ? 1 / keep : 0 }
        return mask
    }

    /// y = sum over k of xs[k] scaled per sample by masks[k] (nil: not scaled): a cell node's sum
    /// of its two ops with drop path on them, in one pass instead of a pass per mask and one for
    /// the sum; in backward each input's gradient is dy scaled by its mask, written when first.
    /// The same values as `sum` of `multiplyByMask`s, to the bit.
    ///
    /// xs: [N, ...] of one shape; masks: [N] each.
    public func maskedSum(_ xs: [Variable], masks: [Tensor?]) throws -> Variable {
        try require(!xs.isEmpty && xs.count == masks.count, "maskedSum", "\(xs.count) inputs and \(masks.count) masks")
        return try nodeSum(xs, batchNorms: [BatchNormApplication?](repeating: nil, count: xs.count), masks: masks, op: "maskedSum")
    }

    /// y = x * mask, with mask elementwise (same shape) or one value per sample.
    func multiplyByMask(_ x: Variable, mask: Tensor, perSample: Bool) -> Variable {
        // Per sample: one scale over each contiguous run of `inner` elements (no index division in
        // the loop, so it vectorises); elementwise: inner = 1 and the mask is read per element.
        let count = x.value.count
        let inner = perSample ? count / max(mask.count, 1) : 1
        let y = Tensor(uninitializedShape: x.shape) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                mask.scalars.withUnsafeBufferPointer { m in
                    Self.scale(xp.baseAddress!, by: m.baseAddress!, inner: inner, count: count, into: out.baseAddress!, accumulate: false)
                }
            }
        }
        return output(y, inputs: [x]) { _, dy in
            x.writeOrAccumulateGrad { dx, accumulate in
                mask.scalars.withUnsafeBufferPointer { m in
                    Self.scale(dy.baseAddress!, by: m.baseAddress!, inner: inner, count: count, into: dx.baseAddress!, accumulate: accumulate)
                }
            }
        }
    }

    /// d = a * m (or d += a * m), m holding one value per run of `inner` elements (inner = 1: per element).
    private static func scale(_ a: UnsafePointer<Float>, by m: UnsafePointer<Float>, inner: Int, count: Int,
                              into d: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if inner == 1 {
            Parallel.forRanges(count) { r in
                if accumulate {
                    for i in r { d[i] += a[i] * m[i] }
                } else {
                    for i in r { d[i] = a[i] * m[i] }
                }
            }
            return
        }
        Parallel.forChunks(count / inner, work: count) { _, samples in
            for s in samples { scaleRun(a, by: m[s], into: d, s * inner..<(s + 1) * inner, accumulate: accumulate) }
        }
    }

    /// d[range] = a[range] * f (or +=); without a factor, a copy (or an add).
    @inline(__always)
    static func scaleRun(_ a: UnsafePointer<Float>, by f: Float?, into d: UnsafeMutablePointer<Float>, _ range: Range<Int>,
                                 accumulate: Bool) {
        switch (accumulate, f) {
        case (false, let f?): for i in range { d[i] = a[i] * f }
        case (false, nil): (d + range.lowerBound).update(from: a + range.lowerBound, count: range.count)
        case (true, let f?): for i in range { d[i] += a[i] * f }
        case (true, nil): for i in range { d[i] += a[i] }
        }
    }
}
