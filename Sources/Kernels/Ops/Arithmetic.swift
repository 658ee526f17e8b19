/// Elementwise arithmetic: sums, scaling, and the weighted sum of a DARTS mixed edge.

extension Tape {
    /// a + b, same shapes.
    public func add(_ a: Variable, _ b: Variable) throws -> Variable {
        try require(a.shape == b.shape, "add", "\(a.shape) vs \(b.shape)")
        return try sum([a, b])
    }

    /// The elementwise sum of one or more tensors of the same shape.
    public func sum(_ xs: [Variable]) throws -> Variable {
        try require(!xs.isEmpty, "sum", "no inputs")
        let shape = xs[0].shape
        try require(xs.allSatisfy { $0.shape == shape }, "sum", "shapes differ: \(xs.map(\.shape))")
        var y = xs[0].value
        y.scalars.withUnsafeMutableBufferPointer { yp in
            for x in xs.dropFirst() {
                x.value.scalars.withUnsafeBufferPointer { xp in
                    for i in 0..<yp.count { yp[i] += xp[i] }
                }
            }
        }
        return output(y, inputs: xs) { _, dy in
            for x in xs where x.requiresGrad {
                x.writeOrAccumulateGrad { dx, accumulate in
                    if accumulate {
                        for i in 0..<dx.count { dx[i] += dy[i] }
                    } else {
                        dx.baseAddress!.update(from: dy.baseAddress!, count: dx.count)
                    }
                }
            }
        }
    }

    /// s * x for a constant s.
    public func scale(_ x: Variable, _ s: Float) -> Variable {
        var y = x.value
        y.scalars.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] *= s } }
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in for i in 0..<dx.count { dx[i] += s * dy[i] } }
        }
    }

    /// sum_k weights[indices[k]] * xs[k]: the output of a mixed edge, with gradients for the inputs
    /// and the weights (dL/dw_i = <dL/dy, x_k>).
    ///
    /// xs: K tensors of one shape; weights: [M]; indices: which weight scales each input (default
    /// 0..<K; a mixed edge skips its `none` op, whose output is zero) -> that shape.
    public func weightedSum(_ xs: [Variable], weights w: Variable, indices: [Int]? = nil) throws -> Variable {
        let op = "weightedSum"
        try require(!xs.isEmpty, op, "no inputs")
        let idx = indices ?? Array(0..<xs.count)
        try require(w.shape.count == 1 && idx.count == xs.count && idx.allSatisfy { $0 >= 0 && $0 < w.shape[0] }, op,
                    "weights \(w.shape) for \(xs.count) inputs at indices \(idx)")
        let shape = xs[0].shape
        try require(xs.allSatisfy { $0.shape == shape }, op, "shapes differ: \(xs.map(\.shape))")
        var y = Tensor(shape: shape)
        let wv = w.value.scalars
        y.scalars.withUnsafeMutableBufferPointer { yp in
            for (k, x) in xs.enumerated() {
                let s = wv[idx[k]]
                x.value.scalars.withUnsafeBufferPointer { xp in
                    for i in 0..<yp.count { yp[i] += s * xp[i] }
                }
            }
        }
        return output(y, inputs: xs + [w]) { _, dy in
            for (k, x) in xs.enumerated() where x.requiresGrad {
                let s = wv[idx[k]]
                x.writeOrAccumulateGrad { dx, accumulate in
                    if accumulate {
                        for i in 0..<dx.count { dx[i] += s * dy[i] }
                    } else {
                        for i in 0..<dx.count { dx[i] = s * dy[i] }
                    }
                }
            }
            if w.requiresGrad {
                w.accumulateGrad { dw in
                    for (k, x) in xs.enumerated() {
                        x.value.scalars.withUnsafeBufferPointer { xp in
                            // Vectorised Float sums over chunks, added in Double.
                            var acc = 0.0
                            var start = 0
                            while start < dy.count {
                                let n = min(4096, dy.count - start)
                                acc += Double(Reduce.dot(dy.baseAddress! + start, xp.baseAddress! + start, n))
                                start += n
                            }
                            dw[idx[k]] += Float(acc)
                        }
                    }
                }
            }
        }
    }

    /// a * b elementwise, same shapes.
    public func multiply(_ a: Variable, _ b: Variable) throws -> Variable {
        try require(a.shape == b.shape, "multiply", "\(a.shape) vs \(b.shape)")
        var y = a.value
        y.scalars.withUnsafeMutableBufferPointer { yp in
            b.value.scalars.withUnsafeBufferPointer { bp in for i in 0..<yp.count { yp[i] *= bp[i] } }
        }
        return output(y, inputs: [a, b]) { _, dy in
            if a.requiresGrad {
                a.accumulateGrad { da in
                    b.value.scalars.withUnsafeBufferPointer { bp in for i in 0..<da.count { da[i] += dy[i] * bp[i] } }
                }
            }
            if b.requiresGrad {
                b.accumulateGrad { db in
                    a.value.scalars.withUnsafeBufferPointer { ap in for i in 0..<db.count { db[i] += dy[i] * ap[i] } }
                }
            }
        }
    }

    /// The sum of all elements: any shape -> scalar [].
    public func sumAll(_ x: Variable) -> Variable {
        let y = Tensor(shape: [], repeating: Float(x.value.sum()))
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in for i in 0..<dx.count { dx[i] += dy[0] } }
        }
    }

    /// Row `index` of x: [R, K] -> [K] (for example one edge's weights out of softmaxed alphas).
    public func row(_ x: Variable, _ index: Int) throws -> Variable {
        try require(x.shape.count == 2 && index >= 0 && index < x.shape[0], "row",
                    "row \(index) of input \(x.shape)")
        let k = x.shape[1]
        let y = try Tensor(shape: [k], scalars: Array(x.value.scalars[(index * k)..<((index + 1) * k)]))
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in for j in 0..<k { dx[index * k + j] += dy[j] } }
        }
    }
}
