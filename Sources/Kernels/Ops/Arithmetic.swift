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
        try weightedSum(xs, weights: w, indices: indices, batchNorms: [BatchNormApplication?](repeating: nil, count: xs.count),
                        op: "weightedSum")
    }

    /// sum_k weights[indices[k]] * BN_k(xs[k]), BN_k being `batchNorms[k]` (nil: xs[k] itself): a
    /// mixed edge whose sep_conv, dil_conv and pooling ops end with a BatchNorm, that BatchNorm
    /// applied on the fly (as `batchNormSum` does for a cell node). Neither the normalised outputs
    /// nor their gradients are materialised, and the normalised outputs are not kept for the
    /// weights' gradient. The same values, statistics and gradients as `batchNorm` then
    /// `weightedSum`, to the bit. xs with a BatchNorm: [N, C, H, W].
    public func weightedBatchNormSum(_ xs: [Variable], weights w: Variable, indices: [Int]? = nil,
                                     batchNorms: [BatchNormApplication?]) throws -> Variable {
        try weightedSum(xs, weights: w, indices: indices, batchNorms: batchNorms, op: "weightedBatchNormSum")
    }

    private func weightedSum(_ xs: [Variable], weights w: Variable, indices: [Int]?, batchNorms: [BatchNormApplication?],
                             op: String) throws -> Variable {
        try require(!xs.isEmpty, op, "no inputs")
        try require(batchNorms.count == xs.count, op, "\(xs.count) inputs and \(batchNorms.count) BatchNorms")
        let idx = indices ?? Array(0..<xs.count)
        try require(w.shape.count == 1 && idx.count == xs.count && idx.allSatisfy { $0 >= 0 && $0 < w.shape[0] }, op,
                    "weights \(w.shape) for \(xs.count) inputs at indices \(idx)")
        let shape = xs[0].shape
        try require(xs.allSatisfy { $0.shape == shape }, op, "shapes differ: \(xs.map(\.shape))")
        let normalises = batchNorms.contains { $0 != nil }
        try require(!normalises || shape.count == 4, op, "inputs must be [N, C, H, W] for BatchNorm, got \(shape)")
        let plans = try BatchNormPlan.plans(xs, batchNorms, op: op)
        let wv = w.value.scalars
        let scales = idx.map { wv[$0] }
        let count = xs[0].value.count
        let (c, hw) = normalises ? (shape[1], shape[2] * shape[3]) : (1, max(count, 1))
        // Blocks of 4096 elements: each block of y is written once while it sits in cache, and
        // blocks are split over threads. Alpha-gradient dot products are summed per block and the
        // blocks added in order, so the result does not depend on the thread count.
        let block = 4096
        let blocks = (count + block - 1) / block
        let inputs = xs.map(\.value.scalars)
        /// Calls body(range, scale, shift) for the runs of lo..<hi within one plane (one channel).
        @inline(__always)
        func forEachPlaneRun(_ plan: BatchNormPlan, _ lo: Int, _ hi: Int, _ body: (Range<Int>, Float, Float) -> Void) {
            var i = lo
            while i < hi {
                let end = min(hi, (i / hw + 1) * hw)
                let ch = (i / hw) % c
                body(i..<end, plan.scale[ch], plan.shift[ch])
                i = end
            }
        }
        let y = Tensor(uninitializedShape: shape) { out in
            guard count > 0 else { return }
            let yb = out.baseAddress!
            withPointers(inputs) { ptrs in
                Parallel.forEach(blocks, work: count * xs.count) { b in
                    let lo = b * block, hi = min(lo + block, count)
                    for k in 0..<ptrs.count {
                        let (sk, xk) = (scales[k], ptrs[k])
                        guard let plan = plans[k] else {
                            if k == 0 {
                                for i in lo..<hi { yb[i] = sk * xk[i] }
                            } else {
                                for i in lo..<hi { yb[i] += sk * xk[i] }
                            }
                            continue
                        }
                        // (x * scale + shift) rounded first: BatchNorm's output, then the sum's product.
                        forEachPlaneRun(plan, lo, hi) { r, a, t in
                            if k == 0 {
                                for i in r { yb[i] = sk * (xk[i] * a + t) }
                            } else {
                                for i in r { yb[i] += sk * (xk[i] * a + t) }
                            }
                        }
                    }
                }
            }
        }
        // Backward reads the inputs (for the weights' gradient), not the output.
        return output(y, inputs: xs + [w] + batchNorms.flatMap { $0?.parameters ?? [] }, op: op, readsOutput: false) { _, dy in
            guard let g = dy.baseAddress else { return }
            let n = shape[0]
            for (k, x) in xs.enumerated() {
                let s = scales[k]
                if let plan = plans[k], let bn = batchNorms[k] {
                    // BatchNorm's backward of s * dy (drop path's per-sample factors, all s).
                    guard bn.needsBackward(x) else { continue }
                    try plan.backward(x: x, gamma: bn.gamma, beta: bn.beta, dy: g, factors: [Float](repeating: s, count: n), relu: false)
                    continue
                }
                guard x.requiresGrad else { continue }
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
                        ScratchPool.shared.withBuffers(Parallel.chunks(blocks, work: count * xs.count), size: normalises ? block : 1) { scratch in
                            Parallel.forChunks(blocks, work: count * xs.count) { worker, range in
                                let normalised = scratch[worker]
                                for b in range {
                                    let lo = b * block, m = min(block, count - lo)
                                    for k in 0..<ptrs.count {
                                        guard let plan = plans[k] else {
                                            pb[b * ptrs.count + k] = Reduce.dot(g + lo, ptrs[k] + lo, m)
                                            continue
                                        }
                                        // The block of BatchNorm's output, rebuilt as forward computed it.
                                        let xk = ptrs[k]
                                        forEachPlaneRun(plan, lo, lo + m) { r, a, t in
                                            for i in r { normalised[i - lo] = xk[i] * a + t }
                                        }
                                        pb[b * ptrs.count + k] = Reduce.dot(g + lo, normalised, m)
                                    }
                                }
                            }
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
