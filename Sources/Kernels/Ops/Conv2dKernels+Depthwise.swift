/// Depthwise convolution kernels (groups == channels): the DARTS sep_conv and dil_conv.

extension Conv2dKernels {
    /// Calls `body(scratch, channel, plane)` for every plane of the batch, channel by channel
    /// (samples in order within a channel), the channels split over the threads: one channel per
    /// task, so no two tasks write the same depthwise weights. Each worker's scratch of
    /// `scratchSize` floats is zeroed once.
    static func forEachChannelPlane(_ g: ConvGeometry, scratchSize: Int,
                                    _ body: (_ scratch: UnsafeMutablePointer<Float>, _ channel: Int, _ plane: Int) -> Void) {
        ScratchPool.shared.withBuffers(Parallel.chunks(g.inChannels, work: g.macs), size: scratchSize) { scratch in
            Parallel.forChunks(g.inChannels, work: g.macs) { worker, range in
                let s = scratch[worker]
                s.update(repeating: 0, count: scratchSize)
                for c in range {
                    for n in 0..<g.batch { body(s, c, n * g.inChannels + c) }
                }
            }
        }
    }

    // MARK: Depthwise

    /// One channel plane, row by row (any stride): y += w ⋆ x.
    @inline(__always)
    static func depthwisePlane(_ g: ConvGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let (W, OW, s) = (g.width, g.outWidth, g.stride)
        g.forEachTap { ky, kx, rowOffset, colOffset, rows, cols in
            guard !cols.isEmpty else { return }
            let wv = w[ky * g.kernelW + kx]
            for oy in rows {
                let (xr, yr) = (x + (oy * s + rowOffset) * W + colOffset, y + oy * OW)
                for ox in cols { yr[ox] += wv * xr[ox * s] }
            }
        }
    }

    /// The adjoint of `depthwisePlane`: dx += wᵀ ⋆ dy.
    @inline(__always)
    static func depthwisePlaneTransposed(_ g: ConvGeometry, dy: UnsafePointer<Float>, w: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let (W, OW, s) = (g.width, g.outWidth, g.stride)
        g.forEachTap { ky, kx, rowOffset, colOffset, rows, cols in
            guard !cols.isEmpty else { return }
            let wv = w[ky * g.kernelW + kx]
            for oy in rows {
                let (dr, gr) = (dx + (oy * s + rowOffset) * W + colOffset, dy + oy * OW)
                for ox in cols { dr[ox * s] += wv * gr[ox] }
            }
        }
    }

    /// dw[ky, kx] += sum over positions of dy * x for one channel plane.
    @inline(__always)
    static func depthwiseWeightGrad(_ g: ConvGeometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>) {
        let (W, OW, s) = (g.width, g.outWidth, g.stride)
        g.forEachTap { ky, kx, rowOffset, colOffset, rows, cols in
            guard !cols.isEmpty else { return }
            var acc: Float = 0
            for oy in rows {
                let xr = x + (oy * s + rowOffset) * W + colOffset
                acc += Reduce.dot(xr + cols.lowerBound * s, stride: s, dy + oy * OW + cols.lowerBound, cols.count)
            }
            dw[ky * g.kernelW + kx] += acc
        }
    }

    // MARK: Depthwise, whole planes

    /// Depthwise convolution at stride 1 with "same" padding (every DARTS sep_conv and dil_conv
    /// at stride 1): output and input planes share their row pitch, so each kernel tap is one
    /// contiguous multiply-add over (almost) the whole plane, y[q] += w * mask[q] * x[q + offset],
    /// instead of one short loop per row. `mask` zeroes the columns where the tap would read
    /// across a row edge (those reads stay inside the plane and add exactly 0).
    struct DepthwisePlan {
        struct Tap {
            var k: Int, start: Int, end: Int, offset: Int, mask: Int
            /// The tap reads no column across a row edge (its mask is all ones).
            var unmasked: Bool
        }
        let taps: [Tap]
        let plane: Int
        let width: Int
        let kernelW: Int
        let lows: [Int], highs: [Int]

        init?(_ g: ConvGeometry) {
            guard g.stride == 1, g.outHeight == g.height, g.outWidth == g.width else { return nil }
            let (H, W) = (g.height, g.width)
            var taps: [Tap] = []
            var lows: [Int] = [], highs: [Int] = []
            for kx in 0..<g.kernelW {
                let r = validRange(out: W, in: W, stride: 1, offset: kx * g.dilation - g.padding)
                lows.append(r.lowerBound); highs.append(r.upperBound)
            }
            for ky in 0..<g.kernelH {
                let rowOffset = ky * g.dilation - g.padding
                let rows = validRange(out: H, in: H, stride: 1, offset: rowOffset)
                for kx in 0..<g.kernelW where !rows.isEmpty && lows[kx] < highs[kx] {
                    let colOffset = kx * g.dilation - g.padding
                    taps.append(Tap(k: ky * g.kernelW + kx, start: rows.lowerBound * W + lows[kx],
                                    end: (rows.upperBound - 1) * W + highs[kx], offset: rowOffset * W + colOffset, mask: kx,
                                    unmasked: lows[kx] == 0 && highs[kx] == W))
                }
            }
            self.taps = taps
            plane = H * W
            width = W
            kernelW = g.kernelW
            self.lows = lows
            self.highs = highs
        }

        /// Lends the column masks (kernelW planes of 0/1) to `body`, from reused scratch memory.
        func withMasks(_ body: (UnsafePointer<Float>) -> Void) {
            withMasks(inside: 1, outside: 0, body)
        }

        /// Lends column masks holding `inside` where a tap's column is in bounds, else `outside`
        /// (max pooling adds 0 / -infinity).
        func withMasks(inside: Float, outside: Float, _ body: (UnsafePointer<Float>) -> Void) {
            ScratchPool.shared.withBuffers(1, size: kernelW * plane) { buffers in
                let m = buffers[0]
                for kx in 0..<kernelW {
                    for q in 0..<plane {
                        let ox = q % width
                        m[kx * plane + q] = ox >= lows[kx] && ox < highs[kx] ? inside : outside
                    }
                }
                body(UnsafePointer(m))
            }
        }

        @inline(__always)
        func forward(x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, masks: UnsafePointer<Float>) {
            for t in taps {
                let wv = w[t.k]
                let xs = x + t.offset
                if t.unmasked {
                    for q in t.start..<t.end { y[q] += wv * xs[q] }
                } else {
                    let m = masks + t.mask * plane
                    for q in t.start..<t.end { y[q] += wv * m[q] * xs[q] }
                }
            }
        }

        @inline(__always)
        func backwardInput(dy: UnsafePointer<Float>, w: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, masks: UnsafePointer<Float>) {
            for t in taps {
                let wv = w[t.k]
                let d = dx + t.offset
                if t.unmasked {
                    for q in t.start..<t.end { d[q] += wv * dy[q] }
                } else {
                    let m = masks + t.mask * plane
                    for q in t.start..<t.end { d[q] += wv * m[q] * dy[q] }
                }
            }
        }

        @inline(__always)
        func weightGrad(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>, masks: UnsafePointer<Float>) {
            for t in taps {
                let n = t.end - t.start
                dw[t.k] += t.unmasked
                    ? Reduce.dot(dy + t.start, x + t.offset + t.start, n)
                    : Reduce.dot(dy + t.start, x + t.offset + t.start, masks + t.mask * plane + t.start, n)
            }
        }
    }
}

extension Conv2dKernels {
    // MARK: Depthwise, register-blocked on padded planes

    /// Depthwise convolution at stride 1 with "same" padding (odd square kernel, padding =
    /// dilation x (kernel - 1) / 2: every DARTS sep_conv and dil_conv at stride 1), on a
    /// zero-padded copy of each plane.
    ///
    /// Each block of 8 outputs sums all its taps in registers and is stored once, where the tap-
    /// by-tap plan (`DepthwisePlan`) loads and stores the output plane once per tap and reads a
    /// column mask. The padded copy removes every bounds check: its rows are the plane's width
    /// rounded up to 8 plus the kernel's reach, and its border (written zero once per worker)
    /// supplies the padding. The transposed convolution (input gradient) is the same loop on the
    /// padded output gradient with the kernel flipped; the weight gradient reads the padded input
    /// against the output gradient, copied to rows of the rounded-up width with zero tails where
    /// the width is not a multiple of 8 (7, 14, 28).
    struct DepthwisePadded {
        typealias V = SIMD8<Float>
        let height: Int, width: Int, kernel: Int, dilation: Int, padding: Int
        /// The width rounded up to a multiple of 8: the columns each output row computes.
        let rowWidth: Int
        /// Row pitch and rows of a padded plane.
        let pitch: Int, rows: Int

        init?(_ g: ConvGeometry) {
            guard g.isDepthwise, g.stride == 1, g.kernelH == g.kernelW, g.kernelH % 2 == 1,
                  2 * g.padding == (g.kernelH - 1) * g.dilation,
                  g.outHeight == g.height, g.outWidth == g.width, g.height > 0, g.width > 0 else { return nil }
            height = g.height
            width = g.width
            kernel = g.kernelH
            dilation = g.dilation
            padding = g.padding
            rowWidth = (g.width + 7) & ~7
            pitch = rowWidth + (kernel - 1) * dilation
            rows = height + (kernel - 1) * dilation
        }

        /// Floats of one worker's scratch: a padded plane, then a plane of rows `rowWidth` wide.
        var scratchSize: Int { rows * pitch + height * rowWidth }

        /// Zeroes a worker's scratch (once: later planes only overwrite the interior).
        func clear(_ scratch: UnsafeMutablePointer<Float>) { scratch.update(repeating: 0, count: scratchSize) }

        /// Copies value(x) for each x of a plane into the interior of the padded plane at the start
        /// of `scratch`.
        @inline(__always)
        func pad(_ plane: UnsafePointer<Float>, into scratch: UnsafeMutablePointer<Float>, _ value: (Float) -> Float) {
            // An inline loop: a memmove call per row of 8-32 floats costs more than the copy.
            for r in 0..<height {
                let (dst, src) = (scratch + (r + padding) * pitch + padding, plane + r * width)
                for c in 0..<width { dst[c] = value(src[c]) }
            }
        }

        /// Copies a plane (with `relu`, its ReLU) into the interior of the padded plane.
        @inline(__always)
        func pad(_ plane: UnsafePointer<Float>, into scratch: UnsafeMutablePointer<Float>, relu: Bool = false) {
            if relu {
                pad(plane, into: scratch) { max($0, 0) }  // as `relu`: NaN stays NaN
            } else {
                pad(plane, into: scratch) { $0 }
            }
        }

        /// Copies ReLU(plane * scale + shift) into the interior of the padded plane: BatchNorm and
        /// ReLU applied on the way in, with `batchNormReLU`'s arithmetic.
        @inline(__always)
        func pad(_ plane: UnsafePointer<Float>, into scratch: UnsafeMutablePointer<Float>, scale: Float, shift: Float) {
            pad(plane, into: scratch) { max($0 * scale + shift, 0) }
        }

        /// Every plane of the batch: out (+)= the convolution of `source` with its channel's
        /// kernel (flipped: the transposed convolution, i.e. the input gradient from dy).
        /// - Parameters:
        ///   - relu: convolve ReLU(source) (applied while padding).
        ///   - gate: a tensor shaped as `out` (a ReLU's input): the result is zero where it is
        ///     not positive, before it is stored or added (ReLU's backward, fused).
        func convolvePlanes(_ g: ConvGeometry, _ source: UnsafePointer<Float>, w: UnsafePointer<Float>, flipped: Bool,
                            into out: UnsafeMutablePointer<Float>, accumulate: Bool, relu: Bool = false,
                            gate: UnsafePointer<Float>? = nil) {
            let (kk, hw, planes) = (kernel * kernel, height * width, g.batch * g.inChannels)
            ScratchPool.shared.withBuffers(Parallel.chunks(planes, work: g.macs), size: scratchSize) { scratch in
                Parallel.forChunks(planes, work: g.macs) { worker, range in
                    let s = scratch[worker]
                    clear(s)
                    for nc in range {
                        pad(source + nc * hw, into: s, relu: relu)
                        convolve(s, w: w + (nc % g.inChannels) * kk, flipped: flipped, into: out + nc * hw, accumulate: accumulate,
                                 gate: gate.map { $0 + nc * hw })
                    }
                }
            }
        }

        /// dw += the weight gradient over every plane of the batch, from x (with `relu`,
        /// ReLU(x)) and dy; one channel per task, so no two tasks write the same weights.
        func weightGradPlanes(_ g: ConvGeometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                              relu: Bool = false) {
            let (kk, hw) = (kernel * kernel, height * width)
            Conv2dKernels.forEachChannelPlane(g, scratchSize: scratchSize) { s, c, nc in
                pad(x + nc * hw, into: s, relu: relu)
                weightGrad(s, dy: dy + nc * hw, dw: dw + c * kk)
            }
        }

        /// y (+)= the convolution of the padded plane with w (w flipped: the transposed
        /// convolution), zeroed where `gate` is not positive.
        @inline(__always)
        func convolve(_ padded: UnsafePointer<Float>, w: UnsafePointer<Float>, flipped: Bool,
                      into y: UnsafeMutablePointer<Float>, accumulate: Bool, gate: UnsafePointer<Float>? = nil) {
            // The kernel size as a type, so the tap loops have constant bounds and unroll.
            switch kernel {
            case 3: convolve(Taps3.self, padded, w: w, flipped: flipped, into: y, accumulate: accumulate, gate: gate)
            case 5: convolve(Taps5.self, padded, w: w, flipped: flipped, into: y, accumulate: accumulate, gate: gate)
            default: convolve(TapsAny.self, padded, w: w, flipped: flipped, into: y, accumulate: accumulate, gate: gate)
            }
        }

        @inline(__always)
        private func convolve<T: TapCount>(_: T.Type, _ padded: UnsafePointer<Float>, w: UnsafePointer<Float>, flipped: Bool,
                                           into y: UnsafeMutablePointer<Float>, accumulate: Bool, gate: UnsafePointer<Float>?) {
            let K = T.size ?? kernel
            let d = dilation
            withUnsafeTemporaryAllocation(of: Float.self, capacity: K * K) { taps in
                for k in 0..<(K * K) { taps[k] = flipped ? w[K * K - 1 - k] : w[k] }
                let t = taps.baseAddress!
                /// Stores (or adds) the outputs ox..<ox+8 of row oy, zeroed where the gate is closed.
                @inline(__always)
                func store(_ sum: V, _ oy: Int, _ ox: Int) {
                    var acc = sum
                    let yr = y + oy * width
                    if ox + 8 <= width || (!accumulate && oy * width + ox + 8 <= height * width) {
                        // A row's last, partial vector (rows of 7, 14, 28 floats) is stored
                        // whole: its extra lanes land in later rows of this plane, which are
                        // written after it. Near the plane's end it stores lane by lane (the next
                        // plane may be another thread's).
                        if let gate {
                            let open = UnsafeRawPointer(gate + oy * width + ox).loadUnaligned(as: V.self) .> 0
                            acc = V(repeating: 0).replacing(with: acc, where: open)
                        }
                        if accumulate { acc += UnsafeRawPointer(yr + ox).loadUnaligned(as: V.self) }
                        UnsafeMutableRawPointer(yr + ox).storeBytes(of: acc, as: V.self)
                    } else {
                        for i in 0..<(width - ox) {
                            let v = gate.map { $0[oy * width + ox + i] > 0 ? acc[i] : 0 } ?? acc[i]
                            yr[ox + i] = accumulate ? yr[ox + i] + v : v
                        }
                    }
                }
                var oy = 0
                if d == 1 {
                    // Two output rows at a time: they share K - 1 of their K + 1 input rows, so each
                    // loaded vector feeds both sums (12 loads for 18 multiply-adds at 3x3, not 18).
                    // Each output still adds its taps in the one-row order: the same values. The
                    // blocks go right to left, so a partial last block's extra lanes (in the next
                    // row) are overwritten by that row's first block.
                    let last = (width - 1) / 8 * 8
                    while oy + 1 < height {
                        let top = padded + oy * pitch
                        var ox = last
                        while ox >= 0 {
                            var a0 = V(repeating: 0), a1 = V(repeating: 0)
                            for r in 0...K {
                                let row = top + r * pitch + ox
                                for kx in 0..<K {
                                    let v = UnsafeRawPointer(row + kx).loadUnaligned(as: V.self)
                                    if r < K { a0 += t[r * K + kx] * v }
                                    if r > 0 { a1 += t[(r - 1) * K + kx] * v }
                                }
                            }
                            store(a0, oy, ox)
                            store(a1, oy + 1, ox)
                            ox -= 8
                        }
                        oy += 2
                    }
                }
                while oy < height {
                    let top = padded + oy * pitch
                    var ox = 0
                    while ox < width {
                        var acc = V(repeating: 0)
                        for ky in 0..<K {
                            let row = top + ky * d * pitch + ox
                            for kx in 0..<K {
                                acc += t[ky * K + kx] * UnsafeRawPointer(row + kx * d).loadUnaligned(as: V.self)
                            }
                        }
                        store(acc, oy, ox)
                        ox += 8
                    }
                    oy += 1
                }
            }
        }

        /// dw[k] += sum over positions of dy * x shifted by tap k, from the padded x at the start
        /// of `scratch` and dy (a plane `width` wide).
        ///
        /// Each loaded dy vector feeds every tap's accumulator (K x K independent sums): one
        /// accumulator per tap streamed over the plane was a chain of dependent multiply-adds,
        /// bound by their latency.
        @inline(__always)
        func weightGrad(_ scratch: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>) {
            // Rows a multiple of 8 wide (the DARTS planes: 32, 16, 8) are read where they lie.
            var g = dy
            if rowWidth != width {
                let rounded = scratch + rows * pitch
                for r in 0..<height {
                    let (dst, src) = (rounded + r * rowWidth, dy + r * width)
                    for c in 0..<width { dst[c] = src[c] }
                }
                g = UnsafePointer(rounded)
            }
            switch kernel {
            case 3: weightGrad(Taps3.self, UnsafePointer(scratch), g, dw)
            case 5: weightGrad(Taps5.self, UnsafePointer(scratch), g, dw)
            default: weightGrad(TapsAny.self, UnsafePointer(scratch), g, dw)
            }
        }

        @inline(__always)
        private func weightGrad<T: TapCount>(_: T.Type, _ padded: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                                             _ dw: UnsafeMutablePointer<Float>) {
            let (K, d) = (T.size ?? kernel, dilation)
            withUnsafeTemporaryAllocation(of: V.self, capacity: K * K) { accumulators in
                let acc = accumulators.baseAddress!
                acc.initialize(repeating: V(repeating: 0), count: K * K)
                for oy in 0..<height {
                    let gr = g + oy * rowWidth
                    var ox = 0
                    while ox < rowWidth {
                        let gv = UnsafeRawPointer(gr + ox).loadUnaligned(as: V.self)
                        for ky in 0..<K {
                            let xr = padded + (oy + ky * d) * pitch + ox
                            for kx in 0..<K { acc[ky * K + kx] += gv * UnsafeRawPointer(xr + kx * d).loadUnaligned(as: V.self) }
                        }
                        ox += 8
                    }
                }
                for k in 0..<(K * K) { dw[k] += acc[k].sum() }
            }
        }
    }
}

/// A depthwise kernel size known to the compiler (3, 5) or not (`TapsAny`).
protocol TapCount { static var size: Int? { get } }
enum Taps3: TapCount { static var size: Int? { 3 } }
enum Taps5: TapCount { static var size: Int? { 5 } }
enum TapsAny: TapCount { static var size: Int? { nil } }
