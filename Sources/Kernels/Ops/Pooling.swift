/// Max and average pooling over k x k windows with stride and padding, and global average pooling.
///
/// Max pooling pads with -infinity (as PyTorch), so a window's maximum is always a real input; the
/// forward pass saves the argmax of each window for backward. Average pooling divides by the number
/// of in-bounds elements of each window (PyTorch's `count_include_pad=False`, as DARTS uses).

/// The geometry of one pooling op.
public struct PoolGeometry: Equatable, Sendable {
    public var batch, channels, height, width: Int
    public var kernel, stride, padding: Int
    public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }

    init(op: String, input x: [Int], kernel: Int, stride: Int, padding: Int) throws {
        try require(x.count == 4, op, "input must be [N, C, H, W], got \(x)")
        try requireArgument(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2, op,
                            "kernel \(kernel), stride \(stride), padding \(padding) (padding must be at most kernel/2)")
        batch = x[0]; channels = x[1]; height = x[2]; width = x[3]
        self.kernel = kernel; self.stride = stride; self.padding = padding
        try require(outHeight >= 1 && outWidth >= 1, op, "input \(x) is smaller than the \(kernel)x\(kernel) window")
    }

    /// For stride 1 with "same" padding: the whole-plane tap plan shared with depthwise convolution.
    var samePlan: Conv2dKernels.DepthwisePlan? {
        guard stride == 1, outHeight == height, outWidth == width else { return nil }
        let conv = ConvGeometry(batch: batch, inChannels: channels, height: height, width: width, outChannels: channels,
                                kernelH: kernel, kernelW: kernel, stride: 1, padding: padding, dilation: 1, groups: channels)
        return Conv2dKernels.DepthwisePlan(conv)
    }

    /// The input rows (or columns) that window position o covers, clipped to 0..<size.
    @inline(__always)
    func window(_ o: Int, size: Int) -> Range<Int> {
        let start = o * stride - padding
        return max(start, 0)..<min(start + kernel, size)
    }
}

extension Tape {
    /// Max pooling. x: [N, C, H, W] -> [N, C, OH, OW].
    public func maxPool2d(_ x: Variable, kernel: Int, stride: Int = 1, padding: Int = 0) throws -> Variable {
        let g = try PoolGeometry(op: "maxPool2d", input: x.shape, kernel: kernel, stride: stride, padding: padding)
        if let plan = g.samePlan { return maxPoolSame(x, g, plan) }
        let outHW = g.outHeight * g.outWidth
        // Every plane's outputs and argmax are written below (each branch covers the whole
        // plane): neither is zero-filled first.
        let count = g.batch * g.channels * outHW
        var argmax = [Int32](unsafeUninitializedCapacity: count) { _, n in n = count }
        let y = Tensor(uninitializedShape: [g.batch, g.channels, g.outHeight, g.outWidth]) { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                argmax.withUnsafeMutableBufferPointer { ap in
                    let (xb, yb, ab) = (xp.baseAddress!, yp.baseAddress!, ap.baseAddress!)
                    let threeByThreeStrideTwo = g.kernel == 3 && g.stride == 2 && g.padding == 1
                    let twoByTwoStrideTwo = g.kernel == 2 && g.stride == 2 && g.padding == 0
                    Parallel.forEach(g.batch * g.channels, work: g.batch * g.channels * g.outHeight * g.outWidth * g.kernel * g.kernel) { nc in
                        let xc = xb + nc * g.height * g.width
                        if threeByThreeStrideTwo {
                            Self.maxPool3x3Stride2(xc, height: g.height, width: g.width, outHeight: g.outHeight, outWidth: g.outWidth,
                                                   y: yb + nc * outHW, argmax: ab + nc * outHW)
                            return
                        }
                        if twoByTwoStrideTwo {
                            // PC-DARTS's 2x2 pool of the channels that bypass a reduction edge:
                            // every window inside the plane, four loads and selects.
                            let (y, arg) = (yb + nc * outHW, ab + nc * outHW)
                            for oy in 0..<g.outHeight {
                                let (top, bottom) = (xc + 2 * oy * g.width, xc + (2 * oy + 1) * g.width)
                                for ox in 0..<g.outWidth {
                                    let (c, i) = (2 * ox, 2 * oy * g.width + 2 * ox)
                                    var (best, at) = (top[c], Int32(truncatingIfNeeded: i))
                                    Self.takeLarger(top[c + 1], i + 1, &best, &at)
                                    Self.takeLarger(bottom[c], i + g.width, &best, &at)
                                    Self.takeLarger(bottom[c + 1], i + g.width + 1, &best, &at)
                                    y[oy * g.outWidth + ox] = best
                                    arg[oy * g.outWidth + ox] = at
                                }
                            }
                            return
                        }
                        for oy in 0..<g.outHeight {
                            let rows = g.window(oy, size: g.height)
                            for ox in 0..<g.outWidth {
                                let cols = g.window(ox, size: g.width)
                                var best = -Float.infinity
                                var at = Int32(rows.lowerBound * g.width + cols.lowerBound)
                                for iy in rows {
                                    let row = xc + iy * g.width
                                    for ix in cols { Self.takeLarger(row[ix], iy * g.width + ix, &best, &at) }
                                }
                                yb[nc * outHW + oy * g.outWidth + ox] = best
                                ab[nc * outHW + oy * g.outWidth + ox] = at
                            }
                        }
                    }
                }
            }
        }
        // Backward scatters through the argmax: neither x's value nor the output's is read.
        return output(y, inputs: [x], readsInputs: false, readsOutput: false, repeatable: true) { _, dy in
            x.accumulateGrad { dx in
                let (dxb, dyb) = (dx.baseAddress!, dy.baseAddress!)
                argmax.withUnsafeBufferPointer { ap in
                    Parallel.forEach(g.batch * g.channels, work: g.batch * g.channels * g.outHeight * g.outWidth * g.kernel * g.kernel) { nc in
                        let d = dxb + nc * g.height * g.width
                        for i in 0..<outHW { d[Int(ap[nc * outHW + i])] += dyb[nc * outHW + i] }
                    }
                }
            }
        }
    }

    /// Max pooling's step: v (at input index i) becomes the maximum when it is larger, with
    /// selects, not branches (which input is largest is random; a mispredicted branch per
    /// comparison cost 4x the pass). Ties keep the earlier input, as PyTorch.
    @inline(__always)
    static func takeLarger(_ v: Float, _ i: Int, _ best: inout Float, _ at: inout Int32) {
        let larger = v > best
        best = larger ? v : best
        at = larger ? Int32(truncatingIfNeeded: i) : at
    }

    /// One plane of 3x3 max pooling at stride 2 with padding 1 (the DARTS reduction cells' pool):
    /// the windows inside the plane unrolled, loads and selects only; the first maximum in window
    /// order wins, as in the general loop.
    @inline(__always)
    static func maxPool3x3Stride2(_ x: UnsafePointer<Float>, height h: Int, width w: Int, outHeight oh: Int, outWidth ow: Int,
                                  y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>) {
        /// A window that crosses the plane's edge.
        func edge(_ oy: Int, _ ox: Int) {
            let (r0, c0) = (2 * oy - 1, 2 * ox - 1)
            var best = -Float.infinity
            var at = Int32(max(r0, 0) * w + max(c0, 0))
            for iy in max(r0, 0)..<min(r0 + 3, h) {
                for ix in max(c0, 0)..<min(c0 + 3, w) { takeLarger(x[iy * w + ix], iy * w + ix, &best, &at) }
            }
            y[oy * ow + ox] = best
            argmax[oy * ow + ox] = at
        }
        for oy in 0..<oh {
            let r0 = 2 * oy - 1
            guard r0 >= 0, r0 + 2 < h else {
                for ox in 0..<ow { edge(oy, ox) }
                continue
            }
            edge(oy, 0)
            // Interior columns: every tap inside the plane.
            let last = min(ow, (w - 3) / 2 + 1)
            let (a, b, c) = (x + r0 * w, x + (r0 + 1) * w, x + (r0 + 2) * w)
            var ox = 1
            while ox < last {
                let c0 = 2 * ox - 1
                var best = -Float.infinity
                var at: Int32 = 0
                let base = r0 * w + c0
                takeLarger(a[c0], base, &best, &at); takeLarger(a[c0 + 1], base + 1, &best, &at); takeLarger(a[c0 + 2], base + 2, &best, &at)
                takeLarger(b[c0], base + w, &best, &at); takeLarger(b[c0 + 1], base + w + 1, &best, &at); takeLarger(b[c0 + 2], base + w + 2, &best, &at)
                takeLarger(c[c0], base + 2 * w, &best, &at); takeLarger(c[c0 + 1], base + 2 * w + 1, &best, &at)
                takeLarger(c[c0 + 2], base + 2 * w + 2, &best, &at)
                y[oy * ow + ox] = best
                argmax[oy * ow + ox] = at
                ox += 1
            }
            while ox < ow { edge(oy, ox); ox += 1 }
        }
    }

    /// Average pooling; padding is excluded from the count. x: [N, C, H, W] -> [N, C, OH, OW].
    public func avgPool2d(_ x: Variable, kernel: Int, stride: Int = 1, padding: Int = 0) throws -> Variable {
        let g = try PoolGeometry(op: "avgPool2d", input: x.shape, kernel: kernel, stride: stride, padding: padding)
        if let plan = g.samePlan { return avgPoolSame(x, g, plan) }
        let outHW = g.outHeight * g.outWidth
        var y = Tensor(shape: [g.batch, g.channels, g.outHeight, g.outWidth])
        x.value.scalars.withUnsafeBufferPointer { xp in
            y.scalars.withUnsafeMutableBufferPointer { yp in
                let (xb, yb) = (xp.baseAddress!, yp.baseAddress!)
                let threeByThreeStrideTwo = g.kernel == 3 && g.stride == 2 && g.padding == 1
                Parallel.forEach(g.batch * g.channels, work: g.batch * g.channels * g.outHeight * g.outWidth * g.kernel * g.kernel) { nc in
                    let xc = xb + nc * g.height * g.width
                    for oy in 0..<g.outHeight {
                        let rows = g.window(oy, size: g.height)
                        let y = yb + nc * outHW + oy * g.outWidth
                        // Inside the plane (3x3 / stride 2 / padding 1: the reduction cells' pool,
                        // columns 1..<interior of a row whose window is whole), the window is
                        // unrolled: the same sum, in the same order, over 9.
                        let interior = threeByThreeStrideTwo && rows.count == 3 ? 1..<max(1, min(g.outWidth, (g.width - 3) / 2 + 1)) : 0..<0
                        let (a, b, c) = (xc + rows.lowerBound * g.width, xc + (rows.lowerBound + 1) * g.width,
                                         xc + (rows.lowerBound + 2) * g.width)
                        for ox in 0..<g.outWidth {
                            if interior.contains(ox) {
                                let c0 = 2 * ox - 1
                                var s: Float = a[c0]
                                s += a[c0 + 1]; s += a[c0 + 2]; s += b[c0]; s += b[c0 + 1]; s += b[c0 + 2]
                                s += c[c0]; s += c[c0 + 1]; s += c[c0 + 2]
                                y[ox] = s / 9
                            } else {
                                let cols = g.window(ox, size: g.width)
                                var s: Float = 0
                                for iy in rows { for ix in cols { s += xc[iy * g.width + ix] } }
                                y[ox] = s / Float(rows.count * cols.count)
                            }
                        }
                    }
                }
            }
        }
        return output(y, inputs: [x], readsInputs: false, readsOutput: false, repeatable: true) { _, dy in
            x.accumulateGrad { dx in
                let (dxb, dyb) = (dx.baseAddress!, dy.baseAddress!)
                Parallel.forEach(g.batch * g.channels, work: g.batch * g.channels * g.outHeight * g.outWidth * g.kernel * g.kernel) { nc in
                    let d = dxb + nc * g.height * g.width
                    for oy in 0..<g.outHeight {
                        let rows = g.window(oy, size: g.height)
                        for ox in 0..<g.outWidth {
                            let cols = g.window(ox, size: g.width)
                            let v = dyb[nc * outHW + oy * g.outWidth + ox] / Float(rows.count * cols.count)
                            for iy in rows { for ix in cols { d[iy * g.width + ix] += v } }
                        }
                    }
                }
            }
        }
    }

    /// Global average pooling. x: [N, C, H, W] -> [N, C].
    public func globalAvgPool(_ x: Variable) throws -> Variable {
        try require(x.shape.count == 4, "globalAvgPool", "input must be [N, C, H, W], got \(x.shape)")
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        try require(hw > 0, "globalAvgPool", "input \(x.shape) has no positions")
        var y = Tensor(shape: [n, c])
        x.value.scalars.withUnsafeBufferPointer { xp in
            y.scalars.withUnsafeMutableBufferPointer { yp in
                for i in 0..<(n * c) {
                    var s: Float = 0
                    for j in 0..<hw { s += xp[i * hw + j] }
                    yp[i] = s / Float(hw)
                }
            }
        }
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                for i in 0..<(n * c) {
                    let v = dy[i] / Float(hw)
                    for j in 0..<hw { dx[i * hw + j] += v }
                }
            }
        }
    }
}

// MARK: Stride 1, same size: whole-plane taps

extension Tape {
    /// Max pooling at stride 1 with same-size output. Forward keeps only the maxima (one
    /// vectorised select-and-max per tap); backward finds each window's first maximal input in
    /// window order (row-major, as PyTorch) by comparing inputs with the saved output.
    func maxPoolSame(_ x: Variable, _ g: PoolGeometry, _ plan: Conv2dKernels.DepthwisePlan) -> Variable {
        let hw = g.height * g.width
        let planes = g.batch * g.channels
        let y = Tensor(uninitializedShape: x.shape) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                let (xb, yb) = (xp.baseAddress!, out.baseAddress!)
                // Penalty masks: 0 in bounds, -infinity across a row edge (x + mask, then max).
                plan.withMasks(inside: 0, outside: -.infinity) { penalties in
                    Parallel.forEach(planes, work: planes * hw * 9) { p in
                        let (src, dst) = (xb + p * hw, yb + p * hw)
                        dst.update(repeating: -.infinity, count: hw)
                        for tap in plan.taps {
                            let xs = src + tap.offset
                            if tap.unmasked {
                                for q in tap.start..<tap.end { let v = xs[q]; dst[q] = v > dst[q] ? v : dst[q] }
                            } else {
                                let m = penalties + tap.mask * plan.plane
                                for q in tap.start..<tap.end { let v = xs[q] + m[q]; dst[q] = v > dst[q] ? v : dst[q] }
                            }
                        }
                    }
                }
            }
        }
        return output(y, inputs: [x], op: "maxPool2d", repeatable: true) { out, dy in
            x.accumulateGrad { dx in
                x.value.scalars.withUnsafeBufferPointer { xp in
                    out.value.scalars.withUnsafeBufferPointer { yp in
                        let (xb, yb, dxb, dyb) = (xp.baseAddress!, yp.baseAddress!, dx.baseAddress!, dy.baseAddress!)
                        let workers = Parallel.chunks(planes, work: planes * hw * 9)
                        ScratchPool.shared.withBuffers(workers, size: hw) { claimed in
                            plan.withMasks { masks in
                                Parallel.forChunks(planes, work: planes * hw * 9) { worker, range in
                                    let done = claimed[worker]
                                    for p in range {
                                        let (src, mx, d, gp) = (xb + p * hw, yb + p * hw, dxb + p * hw, dyb + p * hw)
                                        done.update(repeating: 0, count: hw)
                                        for tap in plan.taps {
                                            let m = masks + tap.mask * plan.plane
                                            let (xs, dd) = (src + tap.offset, d + tap.offset)
                                            for q in tap.start..<tap.end {
                                                // 1 for the first in-bounds tap equal to the maximum (selects, no branches).
                                                let hit = m[q] * (xs[q] == mx[q] ? 1 : 0) * (1 - done[q])
                                                dd[q] += hit * gp[q]
                                                done[q] += hit
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Average pooling at stride 1 with same-size output, padding excluded from the count.
    func avgPoolSame(_ x: Variable, _ g: PoolGeometry, _ plan: Conv2dKernels.DepthwisePlan) -> Variable {
        let hw = g.height * g.width
        let planes = g.batch * g.channels
        // 1 / (in-bounds elements of each window): the taps applied to a plane of ones.
        var inverseCount = [Float](repeating: 0, count: hw)
        let ones = [Float](repeating: 1, count: hw)
        let unitWeights = [Float](repeating: 1, count: g.kernel * g.kernel)
        plan.withMasks { masks in
            inverseCount.withUnsafeMutableBufferPointer { c in
                plan.forward(x: ones, w: unitWeights, y: c.baseAddress!, masks: masks)
                for q in 0..<hw { c[q] = 1 / c[q] }
            }
        }
        var out = Tensor(shape: x.shape)
        out.scalars.withUnsafeMutableBufferPointer { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                inverseCount.withUnsafeBufferPointer { ic in
                    let (xb, yb, inv) = (xp.baseAddress!, yp.baseAddress!, ic.baseAddress!)
                    plan.withMasks { masks in
                        Parallel.forEach(planes, work: planes * hw * 9) { p in
                            let dst = yb + p * hw
                            plan.forward(x: xb + p * hw, w: unitWeights, y: dst, masks: masks)
                            for q in 0..<hw { dst[q] *= inv[q] }
                        }
                    }
                }
            }
        }
        return output(out, inputs: [x], op: "avgPool2d", readsInputs: false, readsOutput: false, repeatable: true) { _, dy in
            x.accumulateGrad { dx in
                inverseCount.withUnsafeBufferPointer { ic in
                    let (dxb, dyb, inv) = (dx.baseAddress!, dy.baseAddress!, ic.baseAddress!)
                    plan.withMasks { masks in
                        Parallel.forEach(planes, work: planes * hw * 9) { p in
                            let (d, gp) = (dxb + p * hw, dyb + p * hw)
                            for tap in plan.taps {
                                let m = masks + tap.mask * plan.plane
                                let dd = d + tap.offset
                                for q in tap.start..<tap.end { dd[q] += m[q] * inv[q] * gp[q] }
                            }
                        }
                    }
                }
            }
        }
    }
}
