extension Conv2dKernels {
    /// Depthwise convolution at stride 2 (the DARTS reduction cells' sep_conv and dil_conv on
    /// the cell inputs), computed 8 outputs at a time on column phases.
    ///
    /// Output column ox with tap kx reads padded input column 2 ox + kx d: with the padded plane's
    /// columns split into its even and odd columns (two phase planes of half the width), that is
    /// column ox + (kx d) / 2 of phase (kx d) mod 2, so every tap is a contiguous 8-wide load, as
    /// in the stride-1 kernel (`DepthwisePadded`). The input gradient gathers each input row's
    /// two phase rows from the output gradient and interleaves them; the weight gradient is a dot product of
    /// each output-gradient row with the phase row each tap reads.
    struct DepthwiseStrided {
        typealias V = SIMD8<Float>
        let height: Int, width: Int, outHeight: Int, outWidth: Int
        let kernel: Int, dilation: Int, padding: Int
        /// Output columns rounded up to 8 (the columns each output row computes).
        let rowWidth: Int
        /// Row pitch and rows of a phase plane.
        let pitch: Int, rows: Int

        init?(_ g: ConvGeometry) {
            guard g.isDepthwise, g.stride == 2, g.kernelH == g.kernelW, g.outHeight > 0, g.outWidth > 0 else { return nil }
            height = g.height
            width = g.width
            outHeight = g.outHeight
            outWidth = g.outWidth
            kernel = g.kernelH
            dilation = g.dilation
            padding = g.padding
            rowWidth = (outWidth + 7) & ~7
            // The reads reach column rowWidth - 1 + (K - 1) d / 2; the input's columns reach
            // (W - 1 + p) / 2.
            pitch = max(rowWidth + (kernel - 1) * dilation / 2, (width + padding + 1) / 2)
            rows = max(height + 2 * padding, 2 * (outHeight - 1) + (kernel - 1) * dilation + 1)
        }

        /// Floats of one worker's scratch: two phase planes, then a row of `rowWidth` (forward,
        /// weight gradient); or the output gradient with zero margins, then two phase rows
        /// (input gradient).
        var scratchSize: Int { max(2 * rows * pitch + rowWidth, gradientRows * gradientPitch + 2 * phaseRow) }

        /// The columns of a phase row the input gradient computes (8 at a time).
        var phaseRow: Int { (pitch + 7) & ~7 }
        /// Zero columns left of each output-gradient row, and zero rows above the first: the
        /// largest tap offset, (K - 1) d / 2.
        var gradientMargin: Int { (kernel - 1) * dilation / 2 }
        var gradientPitch: Int { gradientMargin + phaseRow + 8 }
        /// Rows of the zero-bordered output gradient: the margin above, the rows, and zero rows
        /// below down to the last row an input row can reach, (H + 2p - 1) / 2.
        var gradientRows: Int { gradientMargin + max(outHeight, (height + 2 * padding - 1) / 2 + 1) }

        /// Writes a plane into the interior of the two phase planes at the start of `scratch`
        /// (their borders, zeroed once by `clear`, supply the padding).
        @inline(__always)
        func split(_ plane: UnsafePointer<Float>, into scratch: UnsafeMutablePointer<Float>) {
            // Column c goes to phase (c + p) mod 2 at (c + p) / 2: 16 columns at a time, then 8,
            // split into their even and odd lanes, the rest as two strided loops.
            let (a, b) = phaseStarts(scratch)
            for r in 0..<height {
                let (src, row) = (plane + r * width, (r + padding) * pitch)
                let (pa, pb) = (a + row, b + row)
                var c = 0
                while c + 16 <= width {
                    let v = UnsafeRawPointer(src + c).loadUnaligned(as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(pa + c >> 1).storeBytes(of: v.evenHalf, as: V.self)
                    UnsafeMutableRawPointer(pb + c >> 1).storeBytes(of: v.oddHalf, as: V.self)
                    c += 16
                }
                if c + 8 <= width {
                    let v = UnsafeRawPointer(src + c).loadUnaligned(as: V.self)
                    UnsafeMutableRawPointer(pa + c >> 1).storeBytes(of: v.evenHalf, as: SIMD4<Float>.self)
                    UnsafeMutableRawPointer(pb + c >> 1).storeBytes(of: v.oddHalf, as: SIMD4<Float>.self)
                    c += 8
                }
                let even = c
                while c < width { pa[c >> 1] = src[c]; c += 2 }
                c = even + 1
                while c < width { pb[c >> 1] = src[c]; c += 2 }
            }
        }

        /// dx row (+)= the input row whose even columns are a[0...] and odd columns b[0...]
        /// (the phase rows of `transposed`): 16 columns at a time, then 8, their lanes interleaved;
        /// the rest column by column.
        @inline(__always)
        private func interleave(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into d: UnsafeMutablePointer<Float>,
                                accumulate: Bool) {
            var c = 0
            while c + 16 <= width {
                var v = SIMD16<Float>()
                v.evenHalf = UnsafeRawPointer(a + c >> 1).loadUnaligned(as: V.self)
                v.oddHalf = UnsafeRawPointer(b + c >> 1).loadUnaligned(as: V.self)
                if accumulate { v = UnsafeRawPointer(d + c).loadUnaligned(as: SIMD16<Float>.self) + v }
                UnsafeMutableRawPointer(d + c).storeBytes(of: v, as: SIMD16<Float>.self)
                c += 16
            }
            if c + 8 <= width {
                var v = V()
                v.evenHalf = UnsafeRawPointer(a + c >> 1).loadUnaligned(as: SIMD4<Float>.self)
                v.oddHalf = UnsafeRawPointer(b + c >> 1).loadUnaligned(as: SIMD4<Float>.self)
                if accumulate { v = UnsafeRawPointer(d + c).loadUnaligned(as: V.self) + v }
                UnsafeMutableRawPointer(d + c).storeBytes(of: v, as: V.self)
                c += 8
            }
            let even = c
            if accumulate {
                while c < width { d[c] += a[c >> 1]; c += 2 }
                c = even + 1
                while c < width { d[c] += b[c >> 1]; c += 2 }
            } else {
                while c < width { d[c] = a[c >> 1]; c += 2 }
                c = even + 1
                while c < width { d[c] = b[c >> 1]; c += 2 }
            }
        }

        /// Where column 0 and column 1 of the input land in the phase planes of `scratch`:
        /// column 2j goes to the first pointer at j, column 2j + 1 to the second at j.
        @inline(__always)
        func phaseStarts(_ scratch: UnsafeMutablePointer<Float>) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
            let odd = scratch + rows * pitch
            // Padded column c + p: even p puts column 0 in the even phase at p / 2 and column 1 in
            // the odd one at p / 2; odd p puts column 0 in the odd phase at (p - 1) / 2 and column 1
            // in the even phase at (p + 1) / 2.
            return padding & 1 == 0 ? (scratch + padding / 2, odd + padding / 2) : (odd + padding / 2, scratch + padding / 2 + 1)
        }

        func clear(_ scratch: UnsafeMutablePointer<Float>) { scratch.update(repeating: 0, count: scratchSize) }

        /// y = the stride-2 convolution of the plane split into `scratch`.
        @inline(__always)
        func convolve(_ scratch: UnsafePointer<Float>, w: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
            // The kernel size as a type, so the tap loops have constant bounds and unroll.
            switch kernel {
            case 3: convolve(Taps3.self, scratch, w: w, into: y)
            case 5: convolve(Taps5.self, scratch, w: w, into: y)
            default: convolve(TapsAny.self, scratch, w: w, into: y)
            }
        }

        /// Calls `body` with each tap's offset from the start of `scratch` for output (0, 0)
        /// (output row oy adds 2 oy rows, output column ox adds ox), tap k = ky K + kx.
        @inline(__always)
        func withTapOffsets<R>(_ K: Int, _ body: (UnsafePointer<Int>) -> R) -> R {
            withUnsafeTemporaryAllocation(of: Int.self, capacity: K * K) { offsets in
                for ky in 0..<K {
                    for kx in 0..<K {
                        offsets[ky * K + kx] = ((kx * dilation) & 1) * rows * pitch + (kx * dilation) >> 1 + ky * dilation * pitch
                    }
                }
                return body(UnsafePointer(offsets.baseAddress!))
            }
        }

        @inline(__always)
        private func convolve<T: TapCount>(_: T.Type, _ scratch: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                           into y: UnsafeMutablePointer<Float>) {
            let K = T.size ?? kernel
            withTapOffsets(K) { offsets in
                for oy in 0..<outHeight {
                    let (yr, top) = (y + oy * outWidth, scratch + 2 * oy * pitch)
                    var ox = 0
                    while ox < outWidth {
                        var acc = V(repeating: 0)
                        for k in 0..<(K * K) { acc += w[k] * UnsafeRawPointer(top + offsets[k] + ox).loadUnaligned(as: V.self) }
                        if ox + 8 <= outWidth {
                            UnsafeMutableRawPointer(yr + ox).storeBytes(of: acc, as: V.self)
                        } else {
                            for i in 0..<(outWidth - ox) { yr[ox + i] = acc[i] }
                        }
                        ox += 8
                    }
                }
            }
        }

        /// Copies an output-gradient plane row into the zero-tailed row at the end of `scratch`.
        @inline(__always)
        func gradientRow(_ dy: UnsafePointer<Float>, _ oy: Int, _ scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
            let row = scratch + 2 * rows * pitch
            row.update(from: dy + oy * outWidth, count: outWidth)
            return row
        }

        /// dx (+)= the transposed convolution of dy, gathered: padded input position (R, phase,
        /// j) receives w[ky, kx] dy[oy, ox] from every tap with 2 oy + ky d = R, (kx d) mod 2 =
        /// phase and ox = j - (kx d) / 2. Each input row's two phase rows are computed 8 columns
        /// at a time from the output gradient (copied with zero margins into `scratch`), then
        /// interleaved into dx. (Scattering instead stores overlapping vectors, which stalls on
        /// store forwarding.) The borders of the bordered gradient in `scratch` must be zero
        /// (`clear`); each call writes only its interior, so a worker clears once for many planes.
        @inline(__always)
        func transposed(_ dy: UnsafePointer<Float>, w: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                        into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
            let K = kernel
            // The output gradient with zero borders: row oy at margin + oy, column ox at margin + ox.
            let padded = scratch
            for oy in 0..<outHeight {
                (padded + (gradientMargin + oy) * gradientPitch + gradientMargin).update(from: dy + oy * outWidth, count: outWidth)
            }
            let phaseRows = scratch + gradientRows * gradientPitch
            // Where columns 0 and 1 of the input sit in the two phase rows (see `phaseStarts`).
            let (a, b) = padding & 1 == 0 ? (phaseRows + padding / 2, phaseRows + phaseRow + padding / 2)
                                          : (phaseRows + phaseRow + padding / 2, phaseRows + padding / 2 + 1)
            // The taps by (row parity, phase): a padded row R of that parity takes tap (ky, kx)
            // from output row (R - ky d) / 2 at column j - (kx d) / 2. Stored as the offset from
            // (R / 2 rows, column j) of the bordered gradient, and the weight.
            withUnsafeTemporaryAllocation(of: (offset: Int, weight: Float).self, capacity: 4 * K * K) { taps in
            var counts = (0, 0, 0, 0)
            var n = 0
            for parity in 0..<2 {
                for phase in 0..<2 {
                    let first = n
                    for ky in 0..<K where (parity - ky * dilation) & 1 == 0 {
                        for kx in 0..<K where (kx * dilation) & 1 == phase {
                            // (R - ky d) / 2 = R / 2 - (ky d - parity) / 2 for R of this parity.
                            let rowShift = (ky * dilation - parity) >> 1
                            taps[n] = ((gradientMargin - rowShift) * gradientPitch + gradientMargin - (kx * dilation) >> 1, w[ky * K + kx])
                            n += 1
                        }
                    }
                    switch parity * 2 + phase {
                    case 0: counts.0 = n - first
                    case 1: counts.1 = n - first
                    case 2: counts.2 = n - first
                    default: counts.3 = n - first
                    }
                }
            }
            let t = taps.baseAddress!
            for r in 0..<height {
                let R = r + padding
                let parity = R & 1
                var start = parity == 0 ? 0 : counts.0 + counts.1
                for phase in 0..<2 {
                    let count = parity == 0 ? (phase == 0 ? counts.0 : counts.1) : (phase == 0 ? counts.2 : counts.3)
                    let out = phaseRows + phase * phaseRow
                    let base = padded + (R >> 1) * gradientPitch
                    var j = 0
                    while j < phaseRow {
                        var acc = V(repeating: 0)
                        for e in start..<(start + count) {
                            acc += t[e].weight * UnsafeRawPointer(base + t[e].offset + j).loadUnaligned(as: V.self)
                        }
                        UnsafeMutableRawPointer(out + j).storeBytes(of: acc, as: V.self)
                        j += 8
                    }
                    start += count
                }
                interleave(a, b, into: dx + r * width, accumulate: accumulate)
            }
            }
        }

        /// dw[k] += sum over outputs of dy * the input tap k reads, from the plane split into
        /// `scratch`.
        @inline(__always)
        func weightGrad(_ scratch: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>) {
            switch kernel {
            case 3: weightGrad(Taps3.self, scratch, dy: dy, dw: dw)
            case 5: weightGrad(Taps5.self, scratch, dy: dy, dw: dw)
            default: weightGrad(TapsAny.self, scratch, dy: dy, dw: dw)
            }
        }

        @inline(__always)
        private func weightGrad<T: TapCount>(_: T.Type, _ scratch: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                                             dw: UnsafeMutablePointer<Float>) {
            let K = T.size ?? kernel
            // The tail of the gradient row stays zero: lanes past the last output add nothing.
            (scratch + 2 * rows * pitch).update(repeating: 0, count: rowWidth)
            withTapOffsets(K) { offsets in
                withUnsafeTemporaryAllocation(of: V.self, capacity: K * K) { accumulators in
                    let acc = accumulators.baseAddress!
                    acc.initialize(repeating: V(repeating: 0), count: K * K)
                    for oy in 0..<outHeight {
                        let g = gradientRow(dy, oy, scratch)
                        let top = UnsafePointer(scratch) + 2 * oy * pitch
                        var ox = 0
                        while ox < rowWidth {
                            let gv = UnsafeRawPointer(g + ox).loadUnaligned(as: V.self)
                            for k in 0..<(K * K) { acc[k] += gv * UnsafeRawPointer(top + offsets[k] + ox).loadUnaligned(as: V.self) }
                            ox += 8
                        }
                    }
                    for k in 0..<(K * K) { dw[k] += acc[k].sum() }
                }
            }
        }

        /// Every plane of the batch: y = the convolution of x.
        func forwardPlanes(_ g: ConvGeometry, x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
            let (kk, hw, ohw, planes) = (kernel * kernel, height * width, outHeight * outWidth, g.batch * g.inChannels)
            ScratchPool.shared.withBuffers(Parallel.chunks(planes, work: g.macs), size: scratchSize) { scratch in
                Parallel.forChunks(planes, work: g.macs) { worker, range in
                    let s = scratch[worker]
                    clear(s)
                    for nc in range {
                        split(x + nc * hw, into: s)
                        convolve(s, w: w + (nc % g.inChannels) * kk, into: y + nc * ohw)
                    }
                }
            }
        }

        /// Every plane of the batch: dx (+)= the transposed convolution of dy.
        func backwardInputPlanes(_ g: ConvGeometry, dy: UnsafePointer<Float>, w: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                 accumulate: Bool) {
            let (kk, hw, ohw, planes) = (kernel * kernel, height * width, outHeight * outWidth, g.batch * g.inChannels)
            ScratchPool.shared.withBuffers(Parallel.chunks(planes, work: g.macs), size: scratchSize) { scratch in
                Parallel.forChunks(planes, work: g.macs) { worker, range in
                    clear(scratch[worker])
                    for nc in range {
                        transposed(dy + nc * ohw, w: w + (nc % g.inChannels) * kk, scratch: scratch[worker], into: dx + nc * hw,
                                   accumulate: accumulate)
                    }
                }
            }
        }

        /// dw += the weight gradient over the batch; one channel per task.
        func weightGradPlanes(_ g: ConvGeometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>) {
            let (kk, hw, ohw) = (kernel * kernel, height * width, outHeight * outWidth)
            Conv2dKernels.forEachChannelPlane(g, scratchSize: scratchSize) { s, c, nc in
                split(x + nc * hw, into: s)
                weightGrad(s, dy: dy + nc * ohw, dw: dw + c * kk)
            }
        }
    }
}
