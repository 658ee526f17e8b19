import ArgumentParser
import Kernels

extension BenchKernels {
    /// `--layout-shapes`: (Cout, Cin, size) triples written `CoutxCinxSize`.
    func parseLayoutShapes(_ text: String) throws -> [(cout: Int, cin: Int, size: Int)] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let shapes = parts.compactMap { part -> (cout: Int, cin: Int, size: Int)? in
            let v = part.split(separator: "x").compactMap { Int($0) }
            return v.count == 3 && v.allSatisfy({ $0 > 0 }) && part.split(separator: "x").count == 3 ? (v[0], v[1], v[2]) : nil
        }
        guard !parts.isEmpty, shapes.count == parts.count else {
            throw ValidationError("--layout-shapes expects comma-separated CoutxCinxSize triples of positive integers (e.g. 36x144x32), got '\(text)'")
        }
        return shapes
    }

    /// The 1x1 convolution's forward product on three layouts, its input from memory, and per
    /// sample with its input in cache (one thread; see the command's discussion).
    func benchLayouts() throws {
        let shapes = try parseLayoutShapes(layoutShapes)
        let columns = ["NCHW per sample", "NHWC one GEMM", "CNHW one GEMM", "NCHW per sample, input in cache"]
        print("1x1 convolution forward by layout: batch \(batch), 1 thread, GFLOP/s at the median of \(repeats) runs (at the fastest), inputs from memory (\(flushMb) MB streamed before each run) except the last column")
        let flushCount = flushMb * (1 << 20) / 4
        let flush = UnsafeMutablePointer<Float>.allocate(capacity: flushCount)
        flush.initialize(repeating: 0, count: flushCount)
        defer { flush.deallocate() }
        // Writes one float per cache line: every line of the buffer is brought in and dirtied.
        let evict = { var i = 0; while i < flushCount { flush[i] += 1; i += 16 } }
        let previous = Parallel.threads
        Parallel.setThreads(1)
        BLAS.setThreads(1)
        defer { Parallel.setThreads(previous) }
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
                        return [TimingSummary.measure(repeats: repeats, before: evict) { perSample(false) },
                                TimingSummary.measure(repeats: repeats, before: evict, nhwc),
                                TimingSummary.measure(repeats: repeats, before: evict, cnhw),
                                TimingSummary.measure(repeats: repeats) { perSample(true) }]
                    }
                }
            }
            rows.append(["\(cout)x\(cin)x\(size)x\(size)", String(format: "%.1f", flops / 1e6)]
                        + times.map { String(format: "%.1f (%.1f)", flops / $0.median / 1e9, flops / $0.min / 1e9) })
        }
        printTable(header: ["Cout x Cin x HxW", "MFLOP"] + columns, rows: rows)
    }
}
