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

extension Tape {
    /// y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel.
    ///
    /// x: [N, C, H, W]; gamma, beta: [C] or nil (non-affine) -> [N, C, H, W].
    /// - Parameters:
    ///   - training: batch statistics (and a running-average update) when true, running averages
    ///     when false.
    ///   - updateStatistics: in training mode, whether to update the running averages (false for
    ///     the extra forward passes of a second-order architecture step on an unrolled copy).
    public func batchNorm(_ x: Variable, gamma: Variable? = nil, beta: Variable? = nil,
                          statistics st: BatchNormStatistics, training: Bool,
                          updateStatistics: Bool = true) throws -> Variable {
        let op = "batchNorm"
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        try require(st.channels == c, op, "input \(x.shape) has \(c) channels, statistics have \(st.channels)")
        if let gamma { try require(gamma.shape == [c], op, "gamma \(gamma.shape) vs \(c) channels") }
        if let beta { try require(beta.shape == [c], op, "beta \(beta.shape) vs \(c) channels") }
        let m = n * hw
        if training { try require(m > 1, op, "training needs more than one value per channel, input \(x.shape)") }

        var y = Tensor(shape: x.shape)
        // Per channel: the mean used and 1/sqrt(var + eps).
        var mean = [Float](repeating: 0, count: c)
        var invStd = [Float](repeating: 0, count: c)
        let gammaV = gamma?.value.scalars
        let betaV = beta?.value.scalars
        x.value.scalars.withUnsafeBufferPointer { xp in
            y.scalars.withUnsafeMutableBufferPointer { yp in
                mean.withUnsafeMutableBufferPointer { meanP in
                    invStd.withUnsafeMutableBufferPointer { invP in
                        st.runningMean.scalars.withUnsafeMutableBufferPointer { rm in
                            st.runningVar.scalars.withUnsafeMutableBufferPointer { rv in
                                let (xb, yb) = (xp.baseAddress!, yp.baseAddress!)
                                Parallel.forEach(c) { ch in
                                    var mu: Float, varB: Float
                                    if training {
                                        var s = 0.0, s2 = 0.0
                                        for i in 0..<n {
                                            let p = xb + (i * c + ch) * hw
                                            for j in 0..<hw { let v = Double(p[j]); s += v; s2 += v * v }
                                        }
                                        let mD = s / Double(m)
                                        let vD = max(s2 / Double(m) - mD * mD, 0)
                                        mu = Float(mD); varB = Float(vD)
                                        if updateStatistics {
                                            rm[ch] = (1 - st.momentum) * rm[ch] + st.momentum * mu
                                            rv[ch] = (1 - st.momentum) * rv[ch] + st.momentum * Float(vD * Double(m) / Double(m - 1))
                                        }
                                    } else {
                                        mu = rm[ch]; varB = rv[ch]
                                    }
                                    let inv = 1 / (varB + st.epsilon).squareRoot()
                                    meanP[ch] = mu; invP[ch] = inv
                                    let scale = inv * (gammaV?[ch] ?? 1)
                                    let shift = (betaV?[ch] ?? 0) - mu * scale
                                    for i in 0..<n {
                                        let off = (i * c + ch) * hw
                                        for j in 0..<hw { yb[off + j] = xb[off + j] * scale + shift }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if training && updateStatistics { st.batchesTracked += 1 }

        var inputs = [x]
        if let gamma { inputs.append(gamma) }
        if let beta { inputs.append(beta) }
        return output(y, inputs: inputs) { _, dy in
            // Per channel: sum(dy) and sum(dy * xhat).
            var sumDy = [Float](repeating: 0, count: c)
            var sumDyXhat = [Float](repeating: 0, count: c)
            x.value.scalars.withUnsafeBufferPointer { xp in
                sumDy.withUnsafeMutableBufferPointer { sdy in
                    sumDyXhat.withUnsafeMutableBufferPointer { sdx in
                        let (xb, dyb) = (xp.baseAddress!, dy.baseAddress!)
                        Parallel.forEach(c) { ch in
                            let mu = mean[ch], inv = invStd[ch]
                            var a = 0.0, b = 0.0
                            for i in 0..<n {
                                let off = (i * c + ch) * hw
                                for j in 0..<hw {
                                    let d = Double(dyb[off + j])
                                    a += d
                                    b += d * Double((xb[off + j] - mu) * inv)
                                }
                            }
                            sdy[ch] = Float(a); sdx[ch] = Float(b)
                        }
                    }
                }
            }
            if let gamma, gamma.requiresGrad {
                gamma.accumulateGrad { g in for ch in 0..<c { g[ch] += sumDyXhat[ch] } }
            }
            if let beta, beta.requiresGrad {
                beta.accumulateGrad { g in for ch in 0..<c { g[ch] += sumDy[ch] } }
            }
            guard x.requiresGrad else { return }
            x.accumulateGrad { dx in
                x.value.scalars.withUnsafeBufferPointer { xp in
                    let (xb, dyb, dxb) = (xp.baseAddress!, dy.baseAddress!, dx.baseAddress!)
                    Parallel.forEach(c) { ch in
                        let mu = mean[ch], inv = invStd[ch]
                        let gm = gammaV?[ch] ?? 1
                        if training {
                            // dx = gamma * inv * (dy - mean(dy) - xhat * mean(dy * xhat))
                            let k = gm * inv
                            let mdy = sumDy[ch] / Float(m)
                            let mdx = sumDyXhat[ch] / Float(m)
                            for i in 0..<n {
                                let off = (i * c + ch) * hw
                                for j in 0..<hw {
                                    let xhat = (xb[off + j] - mu) * inv
                                    dxb[off + j] += k * (dyb[off + j] - mdy - xhat * mdx)
                                }
                            }
                        } else {
                            let k = gm * inv
                            for i in 0..<n {
                                let off = (i * c + ch) * hw
                                for j in 0..<hw { dxb[off + j] += k * dyb[off + j] }
                            }
                        }
                    }
                }
            }
        }
    }
}
