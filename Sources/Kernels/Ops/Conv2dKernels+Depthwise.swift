/// Depthwise convolution kernels (groups == channels): the DARTS sep_conv and dil_conv.

extension Conv2dKernels {
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
