import Foundation

/// Softmax over the last dimension and cross-entropy from logits.

extension Tape {
    /// Softmax over the last dimension. x: [..., K] -> [..., K]; rows sum to 1.
    public func softmax(_ x: Variable) throws -> Variable {
        try require(x.shape.count >= 1 && x.shape.last! > 0, "softmax", "input must have a non-empty last dimension, got \(x.shape)")
        let k = x.shape.last!
        let rows = x.value.count / k
        var y = x.value
        y.scalars.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows { Self.softmaxRow(p.baseAddress! + r * k, k) }
        }
        let yv = y
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                yv.scalars.withUnsafeBufferPointer { yp in
                    for r in 0..<rows {
                        var dot: Float = 0
                        for j in 0..<k { dot += dy[r * k + j] * yp[r * k + j] }
                        for j in 0..<k { dx[r * k + j] += yp[r * k + j] * (dy[r * k + j] - dot) }
                    }
                }
            }
        }
    }

    /// In place: p[0..<k] = softmax(p[0..<k]), stabilised by the row maximum; returns
    /// log(sum_j exp(p_j)) of the original values (the log-sum-exp op uses it).
    @inline(__always) @discardableResult
    static func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ k: Int) -> Float {
        var mx = -Float.infinity
        for j in 0..<k { mx = max(mx, p[j]) }
        var s: Float = 0
        for j in 0..<k { p[j] = expf(p[j] - mx); s += p[j] }
        let inv = 1 / s
        for j in 0..<k { p[j] *= inv }
        return mx + logf(s)
    }

    /// Mean cross-entropy of logits against integer labels, as PyTorch's `nn.CrossEntropyLoss`.
    ///
    /// logits: [N, K], labels: N values in 0..<K -> scalar [].
    public func crossEntropy(_ logits: Variable, labels: [Int]) throws -> Variable {
        let op = "crossEntropy"
        try require(logits.shape.count == 2 && logits.shape[0] == labels.count && logits.shape[0] > 0, op,
                    "logits \(logits.shape) vs \(labels.count) labels")
        let (n, k) = (logits.shape[0], logits.shape[1])
        try requireArgument(labels.allSatisfy { $0 >= 0 && $0 < k }, op, "labels must lie in 0..<\(k)")
        var probs = logits.value
        var loss = 0.0
        probs.scalars.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let row = p.baseAddress! + i * k
                var mx = -Float.infinity
                for j in 0..<k { mx = max(mx, row[j]) }
                var s = 0.0
                for j in 0..<k { s += Double(expf(row[j] - mx)) }
                loss += log(s) + Double(mx) - Double(row[labels[i]])
                Self.softmaxRow(row, k)
            }
        }
        let y = Tensor(shape: [], repeating: Float(loss / Double(n)))
        let pv = probs
        return output(y, inputs: [logits]) { _, dy in
            let scale = dy[0] / Float(n)
            logits.accumulateGrad { dx in
                pv.scalars.withUnsafeBufferPointer { pp in
                    for i in 0..<n {
                        for j in 0..<k { dx[i * k + j] += scale * pp[i * k + j] }
                        dx[i * k + labels[i]] -= scale
                    }
                }
            }
        }
    }
}

/// The number of rows of logits [N, K] whose largest entry is at the label (top-1 correct).
public func correctCount(logits: Tensor, labels: [Int]) -> Int {
    guard logits.shape.count == 2, logits.shape[0] == labels.count else { return 0 }
    let k = logits.shape[1]
    var correct = 0
    logits.scalars.withUnsafeBufferPointer { p in
        for i in 0..<labels.count {
            var best = 0
            for j in 1..<k where p[i * k + j] > p[i * k + best] { best = j }
            if best == labels[i] { correct += 1 }
        }
    }
    return correct
}

extension Tape {
    /// Softmax over consecutive segments of a vector: x: [sum of segments] -> same shape, each
    /// segment summing to 1 (PC-DARTS normalises each node's incoming-edge weights this way:
    /// segments 2, 3, 4, 5 for four nodes).
    public func segmentSoftmax(_ x: Variable, segments: [Int]) throws -> Variable {
        let op = "segmentSoftmax"
        try require(x.shape.count == 1, op, "input must be a vector, got \(x.shape)")
        try require(segments.allSatisfy { $0 > 0 } && segments.reduce(0, +) == x.shape[0], op,
                    "segments \(segments) do not partition \(x.shape[0]) elements")
        var y = x.value
        y.scalars.withUnsafeMutableBufferPointer { p in
            var o = 0
            for n in segments { Self.softmaxRow(p.baseAddress! + o, n); o += n }
        }
        let yv = y
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                yv.scalars.withUnsafeBufferPointer { yp in
                    var o = 0
                    for n in segments {
                        var dot: Float = 0
                        for j in o..<(o + n) { dot += dy[j] * yp[j] }
                        for j in o..<(o + n) { dx[j] += yp[j] * (dy[j] - dot) }
                        o += n
                    }
                }
            }
        }
    }
}
