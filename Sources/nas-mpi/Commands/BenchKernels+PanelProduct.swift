import Kernels

extension BenchKernels {
    /// The 1x1 convolution's per-sample products, forward (Cout x HW x Cin) and input gradient
    /// (Cin x HW x Cout), by OpenBLAS and by `PanelProduct`, on one thread over the batch (each
    /// sample's input read where a step leaves it), with whether the two agree bit for bit, written
    /// (beta = 0) and then added onto that (beta = 1, the kernel's `accumulate`).
    func benchPanelProducts() throws {
        let shapes = try parseLayoutShapes(layoutShapes, batch: batch)
        let used = PanelProduct.isEnabled ? "used by the 1x1 convolutions in this build"
            : "not used by the 1x1 convolutions in this build (\(BuildTarget.simdLevel == 3 ? "NAS_MPI_PANEL_PRODUCT=0" : "not an AVX-512 build"))"
        print("1x1 convolution per-sample products, OpenBLAS against nas-mpi's panel kernel (\(used)): batch \(batch), 1 thread, GFLOP/s at the median of \(repeats) runs (at the fastest)")
        let restore = runOnOneThread()
        defer { restore() }
        var rng = RandomGenerator(seed: 2, stream: .initialisation)
        var rows: [[String]] = []
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
                var c1 = [Float](repeating: 0, count: batch * m * hw), c2 = c1
                let flops = 2 * Double(batch * m * k * hw)
                let (blas, panel) = a.scalars.withUnsafeBufferPointer { ap in
                    b.scalars.withUnsafeBufferPointer { bp in
                        c1.withUnsafeMutableBufferPointer { c1p in
                            c2.withUnsafeMutableBufferPointer { c2p in
                                let (a, b, c1, c2) = (ap.baseAddress!, bp.baseAddress!, c1p.baseAddress!, c2p.baseAddress!)
                                let blas = TimingSummary.measure(repeats: repeats) {
                                    for n in 0..<batch {
                                        BLAS.sgemm(m: m, n: hw, k: k, a: a, lda: k, b: b + n * k * hw, ldb: hw, c: c1 + n * m * hw, ldc: hw)
                                    }
                                }
                                let panel = TimingSummary.measure(repeats: repeats) {
                                    for n in 0..<batch {
                                        PanelProduct.multiply(m: m, n: hw, k: k, a: a, lda: k, b: b + n * k * hw, ldb: hw,
                                                              c: c2 + n * m * hw, ldc: hw, accumulate: false)
                                    }
                                }
                                // Once more onto those results, as the input gradients of a
                                // tensor read twice add up: OpenBLAS with beta = 1, the kernel
                                // accumulating.
                                for n in 0..<batch {
                                    BLAS.sgemm(m: m, n: hw, k: k, a: a, lda: k, b: b + n * k * hw, ldb: hw,
                                               beta: 1, c: c1 + n * m * hw, ldc: hw)
                                    PanelProduct.multiply(m: m, n: hw, k: k, a: a, lda: k, b: b + n * k * hw, ldb: hw,
                                                          c: c2 + n * m * hw, ldc: hw, accumulate: true)
                                }
                                return (blas, panel)
                            }
                        }
                    }
                }
                let identical = zip(c1, c2).allSatisfy { $0.bitPattern == $1.bitPattern }
                rows.append([label, name,
                             String(format: "%.1f (%.1f)", flops / blas.median / 1e9, flops / blas.min / 1e9),
                             String(format: "%.1f (%.1f)", flops / panel.median / 1e9, flops / panel.min / 1e9),
                             String(format: "%.2fx", blas.median / panel.median),
                             identical ? "yes" : "no"])
            }
        }
        printTable(header: ["M x N x K", "product", "OpenBLAS", "panel kernel", "speed-up", "bit-identical"], rows: rows)
    }
}
