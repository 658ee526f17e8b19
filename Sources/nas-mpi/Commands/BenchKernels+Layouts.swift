import ArgumentParser
import Kernels
import Search

extension BenchKernels {
    /// `--layout-shapes`: (Cout, Cin, size) triples written `CoutxCinxSize`, each tensor of the
    /// comparison (batch x channels x size^2 floats) at most 2^28 floats (1 GiB).
    func parseLayoutShapes(_ text: String, batch: Int) throws -> [(cout: Int, cin: Int, size: Int)] {
        let bad = ValidationError("--layout-shapes expects comma-separated CoutxCinxSize triples of positive integers (e.g. 36x144x32), got '\(text)'")
        let shapes = try text.split(separator: ",", omittingEmptySubsequences: false).map { part -> (cout: Int, cin: Int, size: Int) in
            let fields = part.trimmingCharacters(in: .whitespaces).split(separator: "x", omittingEmptySubsequences: false)
            let values = fields.compactMap { f in f.allSatisfy(\.isASCII) && f.allSatisfy(\.isNumber) ? Int(f) : nil }
            guard fields.count == 3, values.count == 3, values.allSatisfy({ $0 > 0 }) else { throw bad }
            return (values[0], values[1], values[2])
        }
        for (cout, cin, size) in shapes {
            let tooLarge = ValidationError("--layout-shapes: \(cout)x\(cin)x\(size) at batch \(batch) is too large for the comparison (at most 2^28 floats per tensor)")
            guard cout <= 1 << 16, cin <= 1 << 16, size <= 1 << 12 else { throw tooLarge }
            let (planes, o1) = batch.multipliedReportingOverflow(by: max(cout, cin))
            let (elements, o2) = planes.multipliedReportingOverflow(by: size * size)
            guard !o1, !o2, elements <= 1 << 28 else { throw tooLarge }
        }
        return shapes
    }

    /// Puts the ops and OpenBLAS on one thread; returns what puts the ops' thread count back.
    func runOnOneThread() -> () -> Void {
        let previous = Parallel.threads
        Parallel.setThreads(1)
        BLAS.setThreads(1)
        return { Parallel.setThreads(previous) }
    }

    /// The 1x1 convolution's forward product on three layouts, its input from memory, and per
    /// sample with its input in cache (one thread; see the command's discussion).
    func benchLayouts() throws {
        let shapes = try parseLayoutShapes(layoutShapes, batch: batch)
        let columns = ["NCHW per sample", "NHWC one GEMM", "CNHW one GEMM", "NCHW per sample, input in cache"]
        print("1x1 convolution forward by layout: batch \(batch), 1 thread, GFLOP/s at the median of \(repeats) runs (at the fastest), inputs from memory (\(flushMb) MB streamed before each run) except the last column")
        let flushCount = flushMb * (1 << 20) / 4
        let flush = UnsafeMutablePointer<Float>.allocate(capacity: flushCount)
        flush.initialize(repeating: 0, count: flushCount)
        defer { flush.deallocate() }
        // Writes one float per cache line: every line of the buffer is brought in and dirtied.
        let evict = { var i = 0; while i < flushCount { flush[i] += 1; i += 16 } }
        let restore = runOnOneThread()
        defer { restore() }
        var rng = RandomGenerator(seed: 1, stream: .initialisation)
        var rows: [[String]] = []
        for (cout, cin, size) in shapes {
            let hw = size * size
            var x = Tensor(shape: [batch, cin, size, size]), w = Tensor(shape: [cout, cin])
            rng.fillUniform(&x, -1, 1)
            rng.fillUniform(&w, -0.5, 0.5)
            var y = [Float](repeating: 0, count: batch * cout * hw)
            let flops = 2 * Double(batch * cout * cin * hw)
            let times = x.scalars.withUnsafeBufferPointer { xp in
                w.scalars.withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let (x, w, y) = (xp.baseAddress!, wp.baseAddress!, yp.baseAddress!)
                        // The data are random: each layout reads the same buffer as its own layout.
                        let perSample = { (hot: Bool) in
                            for n in 0..<batch {
                                BLAS.sgemm(m: cout, n: hw, k: cin, a: w, lda: cin, b: x + (hot ? 0 : n * cin * hw), ldb: hw,
                                           c: y + n * cout * hw, ldc: hw)
                            }
                        }
                        // NHWC: y[pixel][cout] = x[pixel][cin] w^T, all pixels of the batch at once.
                        let nhwc = {
                            BLAS.sgemm(transB: true, m: batch * hw, n: cout, k: cin, a: x, lda: cin, b: w, ldb: cin, c: y, ldc: cout)
                        }
                        // CNHW: y[cout][batch * pixels] = w x[cin][batch * pixels].
                        let cnhw = {
                            BLAS.sgemm(m: cout, n: batch * hw, k: cin, a: w, lda: cin, b: x, ldb: batch * hw, c: y, ldc: batch * hw)
                        }
                        // Each layout's product, timed, then checked at a few outputs against a
                        // dot product over its own indexing (a wrong leading dimension fails here):
                        // input(c, n, p) is where channel c of sample n at pixel p sits, output(o, n, p)
                        // where output channel o does.
                        typealias Layout = (run: () -> Void, input: (Int, Int, Int) -> Int, output: (Int, Int, Int) -> Int)
                        let (B, HW) = (batch, hw)
                        let layouts: [Layout] = [
                            ({ perSample(false) }, { c, n, p in (n * cin + c) * HW + p }, { o, n, p in (n * cout + o) * HW + p }),
                            (nhwc, { c, n, p in (n * HW + p) * cin + c }, { o, n, p in (n * HW + p) * cout + o }),
                            (cnhw, { c, n, p in (c * B + n) * HW + p }, { o, n, p in (o * B + n) * HW + p }),
                        ]
                        var summaries: [TimingSummary] = []
                        for layout in layouts {
                            summaries.append(TimingSummary.measure(repeats: repeats, before: evict, layout.run))
                            for (o, n, p) in [(0, 0, 0), (cout - 1, batch - 1, hw - 1), (cout / 2, batch / 2, hw / 3)] {
                                var expected = 0.0, scale = 0.0
                                for c in 0..<cin {
                                    let term = Double(w[o * cin + c]) * Double(x[layout.input(c, n, p)])
                                    expected += term
                                    scale += abs(term)
                                }
                                guard abs(Double(y[layout.output(o, n, p)]) - expected) <= 1e-4 * max(scale, 1) else {
                                    return [TimingSummary]?.none
                                }
                            }
                        }
                        return summaries + [TimingSummary.measure(repeats: repeats) { perSample(true) }]
                    }
                }
            }
            guard let times else {
                throw RunError("bench kernels: the layout comparison's product at \(cout)x\(cin)x\(size) disagrees with a direct dot product")
            }
            rows.append(["\(cout)x\(cin)x\(size)x\(size)", String(format: "%.1f", flops / 1e6)]
                        + times.map { String(format: "%.1f (%.1f)", flops / $0.median / 1e9, flops / $0.min / 1e9) })
        }
        printTable(header: ["Cout x Cin x HxW", "MFLOP"] + columns, rows: rows)
    }
}
