import Kernels

extension BenchKernels {
    /// The 1x1 convolution's per-sample products, forward (Cout x HW x Cin), input gradient
    /// (Cin x HW x Cout) and weight gradient (Cout x Cin x HW, `multiplyTransposed`), by OpenBLAS and
    /// by `PanelProduct`, on one thread over the batch (each sample's input read where a step leaves
    /// it), with whether the two agree bit for bit, written (beta = 0) and then added onto that
    /// (beta = 1, the kernel's `accumulate`).
    func benchPanelProducts() throws {
        let shapes = try parseLayoutShapes(layoutShapes, batch: batch)
        let used = PanelProduct.isEnabled ? "used by the 1x1 convolutions in this build"
            : "not used by the 1x1 convolutions in this build (\(BuildTarget.simdLevel == 3 ? "NAS_MPI_PANEL_PRODUCT=0" : "not an AVX-512 build"))"
        print("1x1 convolution per-sample products, OpenBLAS against nas-mpi's panel kernel (\(used)): batch \(batch), 1 thread, GFLOP/s at the median of \(repeats) runs (at the fastest)")
        let restore = runOnOneThread()
        defer { restore() }
        var rng = RandomGenerator(seed: 2, stream: .initialisation)
        var rows: [[String]] = []
        /// Times `run(kernel: false)` (OpenBLAS) and `run(kernel: true)` over the batch, writing
        /// into c1 and c2, then runs both once more adding onto those results (as a tensor read
        /// twice adds its gradients: OpenBLAS with beta = 1, the kernel accumulating), and adds
        /// the row.
        func compare(_ label: String, _ name: String, flops: Double, outputs: Int,
                     _ run: (_ kernel: Bool, _ accumulate: Bool, _ c: UnsafeMutablePointer<Float>) -> Void) {
            var c1 = [Float](repeating: 0, count: outputs), c2 = c1
            let (blas, panel) = c1.withUnsafeMutableBufferPointer { c1p in
                c2.withUnsafeMutableBufferPointer { c2p in
                    let blas = TimingSummary.measure(repeats: repeats) { run(false, false, c1p.baseAddress!) }
                    let panel = TimingSummary.measure(repeats: repeats) { run(true, false, c2p.baseAddress!) }
                    run(false, true, c1p.baseAddress!)
                    run(true, true, c2p.baseAddress!)
                    return (blas, panel)
                }
            }
            let identical = zip(c1, c2).allSatisfy { $0.bitPattern == $1.bitPattern }
            rows.append([label, name,
                         String(format: "%.1f (%.1f)", flops / blas.median / 1e9, flops / blas.min / 1e9),
                         String(format: "%.1f (%.1f)", flops / panel.median / 1e9, flops / panel.min / 1e9),
                         String(format: "%.2fx", blas.median / panel.median),
                         identical ? "yes" : "no"])
        }
        for (cout, cin, size) in shapes {
            let hw = size * size
            // (name, M, K): the forward product and the input gradient's (wᵀ dy).
            for (name, m, k) in [("forward", cout, cin), ("input gradient", cin, cout)] {
                let label = "\(m)x\(hw)x\(k)"
                guard PanelProduct.handles(n: hw, k: k) else {
                    rows.append([label, name, "-", "-", "-", hw % 64 != 0 ? "N % 64 != 0" : "K > \(PanelProduct.maxDepth)"])
                    continue
                }
                var a = Tensor(shape: [m, k]), b = Tensor(shape: [batch, k, hw])
                rng.fillUniform(&a, -0.5, 0.5)
                rng.fillUniform(&b, -1, 1)
                a.scalars.withUnsafeBufferPointer { ap in
                    b.scalars.withUnsafeBufferPointer { bp in
                        let (a, b) = (ap.baseAddress!, bp.baseAddress!)
                        compare(label, name, flops: 2 * Double(batch * m * k * hw), outputs: batch * m * hw) { kernel, accumulate, c in
                            for n in 0..<batch {
                                if kernel {
                                    PanelProduct.multiply(m: m, n: hw, k: k, a: a, lda: k, b: b + n * k * hw, ldb: hw,
                                                          c: c + n * m * hw, ldc: hw, accumulate: accumulate)
                                } else {
                                    BLAS.sgemm(m: m, n: hw, k: k, a: a, lda: k, b: b + n * k * hw, ldb: hw,
                                               beta: accumulate ? 1 : 0, c: c + n * m * hw, ldc: hw)
                                }
                            }
                        }
                    }
                }
            }
            // The weight gradient dy xᵀ (Cout x Cin x HW), one per sample as the batch's parts add them.
            let label = "\(cout)x\(cin)x\(hw)", name = "weight gradient"
            guard PanelProduct.handlesTransposed(m: cout, n: cin, k: hw) else {
                rows.append([label, name, "-", "-", "-", hw % 16 != 0 ? "K % 16 != 0" : "M N K <= 10^6"])
                continue
            }
            var dy = Tensor(shape: [batch, cout, hw]), x = Tensor(shape: [batch, cin, hw])
            rng.fillUniform(&dy, -0.5, 0.5)
            rng.fillUniform(&x, -1, 1)
            var scratch = [Float](repeating: 0, count: PanelProduct.transposedScratch(n: cin, k: hw))
            dy.scalars.withUnsafeBufferPointer { dp in
                x.scalars.withUnsafeBufferPointer { xp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        let (dy, x, s) = (dp.baseAddress!, xp.baseAddress!, sp.baseAddress!)
                        compare(label, name, flops: 2 * Double(batch * cout * cin * hw), outputs: batch * cout * cin) { kernel, accumulate, c in
                            for n in 0..<batch {
                                if kernel {
                                    PanelProduct.multiplyTransposed(m: cout, n: cin, k: hw, a: dy + n * cout * hw, lda: hw,
                                                                    b: x + n * cin * hw, ldb: hw, c: c + n * cout * cin, ldc: cin,
                                                                    accumulate: accumulate, scratch: s)
                                } else {
                                    BLAS.sgemm(transB: true, m: cout, n: cin, k: hw, a: dy + n * cout * hw, lda: hw,
                                               b: x + n * cin * hw, ldb: hw, beta: accumulate ? 1 : 0, c: c + n * cout * cin, ldc: cin)
                                }
                            }
                        }
                    }
                }
            }
        }
        printTable(header: ["M x N x K", "product", "OpenBLAS", "panel kernel", "speed-up", "bit-identical"], rows: rows)
    }
}
