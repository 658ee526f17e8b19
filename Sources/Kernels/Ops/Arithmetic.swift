/// Elementwise arithmetic: sums, scaling, and the weighted sum of a DARTS mixed edge.

extension Tape {
    /// a + b, same shapes.
    public func add(_ a: Variable, _ b: Variable) throws -> Variable {
        try require(a.shape == b.shape, "add", "\(a.shape) vs \(b.shape)")
        return try sum([a, b])
    }

    /// The elementwise sum of one or more tensors of the same shape (a cell's node sums): one
    /// pass writing the output, ranges split over the threads, and in backward each input's
    /// gradient written (or added) in one parallel pass.
    public func sum(_ xs: [Variable]) throws -> Variable {
        try require(!xs.isEmpty, "sum", "no inputs")
        let shape = xs[0].shape
        try require(xs.allSatisfy { $0.shape == shape }, "sum", "shapes differ: \(xs.map(\.shape))")
        let count = xs[0].value.count
        let y = Tensor(uninitializedShape: shape) { out in
            let d = out.baseAddress!
            withPointers(xs.map(\.value.scalars)) { ps in
                Parallel.forRanges(count) { r in
                    let a = ps[0]
                    if ps.count == 1 {
                        for i in r { d[i] = a[i] }
                        return
                    }
                    let b = ps[1]
                    for i in r { d[i] = a[i] + b[i] }
                    for p in ps.dropFirst(2) { for i in r { d[i] += p[i] } }
                }
            }
        }
        return output(y, inputs: xs, op: "sum", readsInputs: false, readsOutput: false) { _, dy in
            let g = dy.baseAddress!
            for x in xs where x.requiresGrad {
                x.writeOrAccumulateGrad { dx, accumulate in
                    let d = dx.baseAddress!
                    Parallel.forRanges(count) { r in
                        if accumulate {
                            for i in r { d[i] += g[i] }
                        } else {
                            (d + r.lowerBound).update(from: g + r.lowerBound, count: r.count)
                        }
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
        let wv = w.value.scalars
        let scales = idx.map { wv[$0] }
        let count = xs[0].value.count
        // Blocks of 4096 elements: each block of y is written once while it sits in cache, and
        // blocks are split over threads. Alpha-gradient dot products are summed per block and the
        // blocks added in order, so the result does not depend on the thread count.
        let block = 4096
        let blocks = (count + block - 1) / block
        let inputs = xs.map(\.value.scalars)
        let y = Tensor(uninitializedShape: shape) { out in
            guard count > 0 else { return }
            let yb = out.baseAddress!
            withPointers(inputs) { ptrs in
                Parallel.forEach(blocks, work: count * xs.count) { b in
                    let lo = b * block, hi = min(lo + block, count)
                    let (s0, x0) = (scales[0], ptrs[0])
                    for i in lo..<hi { yb[i] = s0 * x0[i] }
                    for k in 1..<ptrs.count {
                        let (sk, xk) = (scales[k], ptrs[k])
                        for i in lo..<hi { yb[i] += sk * xk[i] }
                    }
                }
            }
        }
        return output(y, inputs: xs + [w]) { _, dy in
            guard let g = dy.baseAddress else { return }
            for (k, x) in xs.enumerated() where x.requiresGrad {
                let s = scales[k]
                x.writeOrAccumulateGrad { dx, accumulate in
                    let d = dx.baseAddress!
                    Parallel.forRanges(count) { r in
                        if accumulate {
                            for i in r { d[i] += s * g[i] }
                        } else {
                            for i in r { d[i] = s * g[i] }
                        }
                    }
                }
            }
            if w.requiresGrad, count > 0 {
                var partial = [Float](repeating: 0, count: blocks * xs.count)
                partial.withUnsafeMutableBufferPointer { pp in
                    let pb = pp.baseAddress!
                    withPointers(inputs) { ptrs in
                        Parallel.forEach(blocks, work: count * xs.count) { b in
                            let lo = b * block, n = min(block, count - lo)
                            for k in 0..<ptrs.count { pb[b * ptrs.count + k] = Reduce.dot(g + lo, ptrs[k] + lo, n) }
                        }
                    }
                }
                w.accumulateGrad { dw in
                    for k in 0..<xs.count {
                        var acc = 0.0
                        for b in 0..<blocks { acc += Double(partial[b * xs.count + k]) }
                        dw[idx[k]] += Float(acc)
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

/// Calls `body` with base pointers of several arrays at once (they stay valid during the call).
func withPointers<R>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>]) throws -> R) rethrows -> R {
    func nest(_ i: Int, _ acc: [UnsafePointer<Float>]) throws -> R {
        if i == arrays.count { return try body(acc) }
        return try arrays[i].withUnsafeBufferPointer { try nest(i + 1, acc + [$0.baseAddress!]) }
    }
    return try nest(0, [])
}
