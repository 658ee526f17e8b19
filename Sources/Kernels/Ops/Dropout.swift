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
        let n = x.shape[0]
        let keep = 1 - p
        var mask = Tensor(shape: [n])
        mask.scalars.withUnsafeMutableBufferPointer { m in
            for i in m.indices { m[i] = generator.uniform() < keep ? 1 / keep : 0 }
        }
        return multiplyByMask(x, mask: mask, perSample: true)
    }

    /// y = x * mask, with mask elementwise (same shape) or one value per sample.
    func multiplyByMask(_ x: Variable, mask: Tensor, perSample: Bool) -> Variable {
        let inner = perSample ? x.value.count / max(mask.count, 1) : 1
        var y = x.value
        y.scalars.withUnsafeMutableBufferPointer { yp in
            mask.scalars.withUnsafeBufferPointer { m in
                for i in 0..<yp.count { yp[i] *= m[i / inner] }
            }
        }
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                mask.scalars.withUnsafeBufferPointer { m in
                    for i in 0..<dx.count { dx[i] += dy[i] * m[i / inner] }
                }
            }
        }
    }
}
