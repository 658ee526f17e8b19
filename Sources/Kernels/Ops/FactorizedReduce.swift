/// The two convolutions of a DARTS FactorizedReduce and the concatenation of their outputs, as
/// one op.
///
/// The reference reduces x [N, Cin, H, W] with two 1x1 convolutions at stride 2, the second on
/// x[:, :, 1:, 1:], and concatenates them. As separate ops, the crop copies x, each convolution
/// gathers its phase of x through im2col (a zero fill and a scalar strided copy per sample), the
/// concatenation copies both outputs, and backward zero-fills and scatters twice, copies the crop's
/// gradient and splits the concatenation's. Here each sample's two phases, x[2i, 2j] and
/// x[2i+1, 2j+1], are gathered into a scratch buffer with vector even/odd halves, and each GEMM
/// writes its half of the output in place; backward scatters both phases into x's gradient in one
/// pass, and takes both weight gradients in the same pass over the batch.
///
/// The GEMMs are the separate ops' (same operands, same shapes), the weight gradients are summed in
/// the same batch parts, and x's gradient gets each phase's value once, so the results equal the
/// separate ops' to the bit, for any thread count.

extension Tape {
    /// y = concat(conv2d(x, w1, stride 2), conv2d(x[:, :, 1:, 1:], w2, stride 2)) over channels:
    /// x [N, Cin, H, W] with even H and W, w1 and w2 [Cout/2, Cin, 1, 1] -> [N, Cout, H/2, W/2].
    /// The output carries its plane sums (`Variable.planeSums`) for the BatchNorm after it.
    public func factorizedReduce(_ x: Variable, _ w1: Variable, _ w2: Variable) throws -> Variable {
        let op = "factorizedReduce"
        try require(x.shape.count == 4, op, "input must be [N, C, H, W], got \(x.shape)")
        let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        try require(h % 2 == 0 && w % 2 == 0 && h > 0 && w > 0, op, "input \(x.shape) needs an even height and width")
        try require(w1.shape.count == 4 && w1.shape[1] == cin && w1.shape[2] == 1 && w1.shape[3] == 1, op,
                    "first weight \(w1.shape) is not [Cout/2, \(cin), 1, 1]")
        try require(w2.shape == w1.shape, op, "weights \(w1.shape) and \(w2.shape) differ")
        try require(w1 !== w2, op, "the two convolutions need two weights (one variable given twice)")
        let kernels = Conv2dKernels.FactorizedReduce(batch: n, inChannels: cin, height: h, width: w, halfOut: w1.shape[0])
        multiplyAccumulates += 2 * kernels.macsPerConvolution
        var sums = [Float](repeating: 0, count: 2 * n * kernels.outChannels)
        let y = Tensor(uninitializedShape: [n, kernels.outChannels, h / 2, w / 2]) { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                w1.value.scalars.withUnsafeBufferPointer { ap in
                    w2.value.scalars.withUnsafeBufferPointer { bp in
                        sums.withUnsafeMutableBufferPointer { sp in
                            kernels.forward(x: xp.baseAddress!, w: (ap.baseAddress!, bp.baseAddress!), y: yp.baseAddress!,
                                            planeSums: sp.baseAddress!)
                        }
                    }
                }
            }
        }
        let out = output(y, inputs: [x, w1, w2], op: op, readsOutput: false) { _, dy in
            let weightsNeed = w1.requiresGrad || w2.requiresGrad
            let xValue = weightsNeed ? x.valueForBackward() : nil
            func run(_ dx: UnsafeMutablePointer<Float>?, _ accumulate: Bool, _ dw1: UnsafeMutablePointer<Float>?,
                     _ dw2: UnsafeMutablePointer<Float>?) {
                w1.value.scalars.withUnsafeBufferPointer { ap in
                    w2.value.scalars.withUnsafeBufferPointer { bp in
                        guard let xValue else {
                            kernels.backward(dy: dy.baseAddress!, w: (ap.baseAddress!, bp.baseAddress!), x: nil, dx: dx,
                                             accumulate: accumulate, dw: (nil, nil))
                            return
                        }
                        xValue.scalars.withUnsafeBufferPointer { xp in
                            kernels.backward(dy: dy.baseAddress!, w: (ap.baseAddress!, bp.baseAddress!), x: xp.baseAddress!, dx: dx,
                                             accumulate: accumulate, dw: (dw1, dw2))
                        }
                    }
                }
            }
            func withWeightGradients(_ body: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void) {
                func second(_ a: UnsafeMutablePointer<Float>?) {
                    if w2.requiresGrad { w2.accumulateGrad { body(a, $0.baseAddress!) } } else { body(a, nil) }
                }
                if w1.requiresGrad { w1.accumulateGrad { second($0.baseAddress!) } } else { second(nil) }
            }
            if x.requiresGrad {
                x.writeOrAccumulateGrad { dx, accumulate in withWeightGradients { run(dx.baseAddress!, accumulate, $0, $1) } }
            } else if weightsNeed {
                withWeightGradients { run(nil, false, $0, $1) }
            }
        }
        out.planeSums = sums
        return out
    }
}

extension Conv2dKernels {
    /// The kernels of `Tape.factorizedReduce`.
    struct FactorizedReduce {
        let batch, inChannels, height, width, halfOut: Int

        var outChannels: Int { 2 * halfOut }
        var outHeight: Int { height / 2 }
        var outWidth: Int { width / 2 }
        var outPlane: Int { outHeight * outWidth }
        var macsPerConvolution: Int { batch * halfOut * inChannels * outPlane }
        /// The separate convolutions' geometry (the weight gradient's batch parts follow it).
        var geometry: ConvGeometry {
            // The shapes are checked by the op; this cannot fail.
            try! ConvGeometry(input: [batch, inChannels, height, width], weight: [halfOut, inChannels, 1, 1], stride: 2,
                              padding: 0, dilation: 1, groups: 1)
        }

        /// col[ci, i, j] = x[ci, 2i + phase, 2j + phase] for one sample.
        func gather(_ x: UnsafePointer<Float>, phase: Int, into col: UnsafeMutablePointer<Float>) {
            let (ow, planeIn) = (outWidth, height * width)
            for ci in 0..<inChannels {
                for i in 0..<outHeight {
                    // Vectors are loaded from the row's even column, so the odd phase never reads
                    // past the row.
                    let (src, dst) = (x + ci * planeIn + (2 * i + phase) * width, col + (ci * outHeight + i) * ow)
                    var j = 0
                    while j + 8 <= ow {
                        let v = UnsafeRawPointer(src + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
                        UnsafeMutableRawPointer(dst + j).storeBytes(of: phase == 0 ? v.evenHalf : v.oddHalf, as: SIMD8<Float>.self)
                        j += 8
                    }
                    while j < ow { dst[j] = src[2 * j + phase]; j += 1 }
                }
            }
        }

        /// One sample's x gradient from both phases' column gradients: dx[ci, 2i + p, 2j + p] gets
        /// col_p[ci, i, j] (added with `accumulate`; else written, with zeros at the other
        /// positions, each value as 0 + g as the separate ops' zero-filled scatter leaves it).
        func scatter(_ cols: (UnsafePointer<Float>, UnsafePointer<Float>), into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
            let (ow, planeIn) = (outWidth, height * width)
            for ci in 0..<inChannels {
                for row in 0..<height {
                    let phase = row & 1
                    let src = (phase == 0 ? cols.0 : cols.1) + (ci * outHeight + row / 2) * ow
                    let dst = dx + ci * planeIn + row * width
                    var j = 0
                    while j + 8 <= ow {
                        let g = UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self)
                        let p = UnsafeMutableRawPointer(dst + 2 * j)
                        var v = accumulate ? p.loadUnaligned(as: SIMD16<Float>.self) : SIMD16<Float>()
                        if phase == 0 { v.evenHalf += g } else { v.oddHalf += g }
                        p.storeBytes(of: v, as: SIMD16<Float>.self)
                        j += 8
                    }
                    while j < ow {
                        let (on, off) = (dst + 2 * j + phase, dst + 2 * j + 1 - phase)
                        if accumulate { on.pointee += src[j] } else { on.pointee = 0 + src[j]; off.pointee = 0 }
                        j += 1
                    }
                }
            }
        }

        /// y (overwritten) and its plane sums, one sample at a time.
        func forward(x: UnsafePointer<Float>, w: (UnsafePointer<Float>, UnsafePointer<Float>), y: UnsafeMutablePointer<Float>,
                     planeSums: UnsafeMutablePointer<Float>) {
            let (inSample, outSample, work) = (inChannels * height * width, outChannels * outPlane, 2 * macsPerConvolution)
            ScratchPool.shared.withBuffers(Parallel.chunks(batch, work: work), size: inChannels * outPlane) { cols in
                Parallel.forChunks(batch, work: work) { worker, range in
                    let col = cols[worker]
                    for n in range {
                        for phase in 0..<2 {
                            gather(x + n * inSample, phase: phase, into: col)
                            Conv2dKernels.product(m: halfOut, n: outPlane, k: inChannels, a: phase == 0 ? w.0 : w.1, lda: inChannels,
                                                  b: col, ldb: outPlane,
                                                  c: y + n * outSample + phase * halfOut * outPlane, ldc: outPlane)
                        }
                        Reduce.planeSums(y, sample: n, channels: outChannels, plane: outPlane, into: planeSums)
                    }
                }
            }
        }

        /// x's gradient (into dx: written, or added with `accumulate`) and both weights'
        /// (added into dw.0 and dw.1; x is needed for them), each where wanted.
        func backward(dy: UnsafePointer<Float>, w: (UnsafePointer<Float>, UnsafePointer<Float>), x: UnsafePointer<Float>?,
                      dx: UnsafeMutablePointer<Float>?, accumulate: Bool,
                      dw: (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?)) {
            let (inSample, outSample, colSize) = (inChannels * height * width, outChannels * outPlane, inChannels * outPlane)
            // Sample n's x gradient: both phases' columns, then one scatter.
            func inputGradient(_ n: Int, _ cols: UnsafeMutablePointer<Float>) {
                guard let dx else { return }
                for phase in 0..<2 {
                    BLAS.sgemm(transA: true, m: inChannels, n: outPlane, k: halfOut, a: phase == 0 ? w.0 : w.1, lda: inChannels,
                               b: dy + n * outSample + phase * halfOut * outPlane, ldb: outPlane,
                               c: cols + phase * colSize, ldc: outPlane)
                }
                scatter((UnsafePointer(cols), UnsafePointer(cols + colSize)), into: dx + n * inSample, accumulate: accumulate)
            }
            guard let x, dw.0 != nil || dw.1 != nil else {
                let work = 2 * macsPerConvolution
                ScratchPool.shared.withBuffers(Parallel.chunks(batch, work: work), size: 2 * colSize) { cols in
                    Parallel.forChunks(batch, work: work) { worker, range in
                        for n in range { inputGradient(n, cols[worker]) }
                    }
                }
                return
            }
            // The weight gradients as the separate convolutions sum theirs (`weightGradientParts`
            // over the same batch parts), stacked: rows 0..<halfOut are w1's, the rest w2's.
            let wCount = halfOut * inChannels
            weightGradientParts(geometry, outChannels: outChannels, dw: [dw.0, dw.1], scratchSize: 2 * colSize,
                                work: 4 * macsPerConvolution) { partial, n, first, _, cols in
                inputGradient(n, cols)
                for phase in 0..<2 where (phase == 0 ? dw.0 : dw.1) != nil {
                    gather(x + n * inSample, phase: phase, into: cols)
                    BLAS.sgemm(transB: true, m: halfOut, n: inChannels, k: outPlane,
                               a: dy + n * outSample + phase * halfOut * outPlane, lda: outPlane, b: cols, ldb: outPlane,
                               beta: first ? 0 : 1, c: partial + phase * wCount, ldc: inChannels)
                }
            }
        }
    }
}
