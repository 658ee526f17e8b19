import Foundation

/// Reductions of logits over their last dimension: the log-sum-exp of each row and the entropy of
/// each row's softmax (the beta-decay and entropy regularisers of the architecture parameters).

extension Tape {
    /// log(sum_j exp(x[r, j])) for each row, stabilised by the row maximum.
    ///
    /// x: [..., K] -> [...] (a vector gives a scalar []). Backward: dx[r, j] += dy[r] * softmax(x[r])[j].
    public func logSumExp(_ x: Variable) throws -> Variable {
        let (rows, k) = try rowShape(x, "logSumExp")
        var p = x.value.scalars
        var y = Tensor(shape: Array(x.shape.dropLast()))
        p.withUnsafeMutableBufferPointer { pp in
            for r in 0..<rows { y.scalars[r] = Self.softmaxRow(pp.baseAddress! + r * k, k) }
        }
        let probabilities = p
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                for r in 0..<rows {
                    for j in 0..<k { dx[r * k + j] += dy[r] * probabilities[r * k + j] }
                }
            }
        }
    }

    /// The entropy H = -sum_j p_j log p_j of each row's softmax p = softmax(x[r]), from the logits
    /// (log p_j = x_j - logsumexp(x), so no log of an underflowed probability is taken).
    ///
    /// x: [..., K] -> [...]. Backward: dx[r, j] += -dy[r] * p_j * (log p_j + H_r).
    public func softmaxEntropy(_ x: Variable) throws -> Variable {
        let (rows, k) = try rowShape(x, "softmaxEntropy")
        var p = x.value.scalars
        var logP = x.value.scalars
        var y = Tensor(shape: Array(x.shape.dropLast()))
        p.withUnsafeMutableBufferPointer { pp in
            for r in 0..<rows {
                let lse = Self.softmaxRow(pp.baseAddress! + r * k, k)
                var h: Float = 0
                for j in 0..<k {
                    logP[r * k + j] -= lse
                    h -= pp[r * k + j] * logP[r * k + j]
                }
                y.scalars[r] = h
            }
        }
        let (probabilities, logProbabilities, entropies) = (p, logP, y.scalars)
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                for r in 0..<rows {
                    for j in 0..<k {
                        dx[r * k + j] -= dy[r] * probabilities[r * k + j] * (logProbabilities[r * k + j] + entropies[r])
                    }
                }
            }
        }
    }

    /// Rows and row length of an input reduced over its last dimension.
    private func rowShape(_ x: Variable, _ op: String) throws -> (rows: Int, k: Int) {
        try require(x.shape.count >= 1 && x.shape.last! > 0, op, "input must have a non-empty last dimension, got \(x.shape)")
        let k = x.shape.last!
        return (x.value.count / k, k)
    }
}
