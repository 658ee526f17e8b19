import ArgumentParser
import Foundation
import Kernels

/// `nas-mpi bench kernels`: convolution forward/backward speed at DARTS supernet shapes, beside
/// OpenBLAS sgemm measured in the same run.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the convolution kernels at DARTS supernet shapes and OpenBLAS sgemm.",
        discussion: """
            For each channel count and image size, times forward and backward (input and weight \
            gradients) of a 1x1 convolution, a dense 3x3 convolution, depthwise 3x3 and 5x5, and \
            dilated (2) depthwise 3x3 and 5x5, on a batch of random data. GFLOP/s counts 2 FLOPs per \
            multiply-accumulate; backward does twice the forward's work. The memory bandwidth for the \
            roofline is a STREAM-like triad, a[i] = b[i] + s * c[i] over three arrays of --triad-mb MB \
            each (far larger than the caches), counting 12 bytes per element (STREAM's convention: \
            the write-allocate read of a is not counted).

            The layout comparison times, on one thread, a 1x1 convolution's forward product at \
            --layout-shapes (Cout x Cin x size) three ways: one product per sample on the NCHW \
            layout nas-mpi uses, one product over the whole batch on a channels-last (NHWC) layout, \
            and one on a CNHW layout (the batch inside each channel's plane); each after streaming \
            --flush-mb MB through the caches, so that the input comes from memory as in a training \
            step. A fourth column repeats the per-sample products with one sample's input, which \
            stays in cache: what the product costs when its input is hot.

            The panel comparison times, on one thread, the per-sample products of a 1x1 \
            convolution at the same shapes, forward (Cout x HxW x Cin) and input gradient \
            (Cin x HxW x Cout), by OpenBLAS and by nas-mpi's own panel kernel (which the 1x1 \
            convolutions use in AVX-512 builds where HxW is a multiple of 64), and the weight \
            gradient (Cout x Cin x HxW, dy x^T) by OpenBLAS and by the kernel's transposed form \
            (used where Cout x Cin x HxW exceeds 10^6), and says whether the two results agree \
            bit for bit, written and then added onto (beta = 1).
            """
    )

    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Channel counts, comma-separated.") var channels = "16,32,64"
    @Option(help: "Image sizes (height = width), comma-separated.") var sizes = "32,16"
    @Option(help: "Timed repetitions per measurement (after one warm-up).") var repeats = 3
    @Option(help: "Size of each of the triad's three arrays, in MB.") var triadMb = 64
    @Option(help: "1x1 convolution shapes for the layout comparison, Cout x Cin x size, comma-separated; the default is the paper-width evaluation network's.")
    var layoutShapes = "36x144x32,36x36x32,72x288x16,72x72x16,144x576x8,144x144x8"
    @Option(help: "MB streamed through the caches before each timed run of the layout comparison.") var flushMb = 256
    @Flag(inversion: .prefixedNo, help: "Run the 1x1 layout comparison.") var layouts = true
    @Flag(inversion: .prefixedNo, help: "Compare the 1x1 per-sample products of OpenBLAS and the panel kernel.") var panelProducts = true
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1, got \(batch)") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        guard triadMb >= 1 && triadMb <= 4096 else { throw ValidationError("--triad-mb must lie in 1...4096, got \(triadMb)") }
        _ = try parsePositiveList(channels, flag: "--channels")
        _ = try parsePositiveList(sizes, flag: "--sizes")
        _ = try parseLayoutShapes(layoutShapes, batch: batch)
        guard flushMb >= 1 && flushMb <= 4096 else { throw ValidationError("--flush-mb must lie in 1...4096, got \(flushMb)") }
    }

    func run() throws {
        let threads = threading.apply()
        let channelList = try parsePositiveList(channels, flag: "--channels")
        let sizeList = try parsePositiveList(sizes, flag: "--sizes")
        print("nas-mpi \(NasMPI.version) bench kernels: batch \(batch), \(threads) thread(s), median of \(repeats) after 1 warm-up")
        print("OpenBLAS: \(BLAS.configuration); \(BLAS.kernelDescription)")
        print("")
        benchSGEMM(threads: threads)
        benchTriad(threads: threads)
        print("")
        let header = ["shape", "op", "MMACs", "fwd ms", "fwd GFLOP/s", "bwd ms", "bwd GFLOP/s", "dx ms", "dw ms"]
        var rows: [[String]] = []
        var rng = RandomGenerator(seed: 1, stream: .initialisation)
        for size in sizeList {
            for c in channelList {
                // (name, weight shape, padding, dilation, groups, stride); stride 2: the reduction
                // cells' first depthwise convolution of sep_conv and dil_conv.
                let kinds: [(String, [Int], Int, Int, Int, Int)] = [
                    ("conv 1x1", [c, c, 1, 1], 0, 1, 1, 1),
                    ("conv 3x3", [c, c, 3, 3], 1, 1, 1, 1),
                    ("dw 3x3", [c, 1, 3, 3], 1, 1, c, 1),
                    ("dw 5x5", [c, 1, 5, 5], 2, 1, c, 1),
                    ("dil dw 3x3 d2", [c, 1, 3, 3], 2, 2, c, 1),
                    ("dil dw 5x5 d2", [c, 1, 5, 5], 4, 2, c, 1),
                    ("dw 3x3 s2", [c, 1, 3, 3], 1, 1, c, 2),
                    ("dw 5x5 s2", [c, 1, 5, 5], 2, 1, c, 2),
                    ("dil dw 3x3 d2 s2", [c, 1, 3, 3], 2, 2, c, 2),
                    ("dil dw 5x5 d2 s2", [c, 1, 5, 5], 4, 2, c, 2),
                ]
                var x = Tensor(shape: [batch, c, size, size])
                rng.fillUniform(&x, -1, 1)
                for (name, wShape, pad, dil, groups, stride) in kinds {
                    var w = Tensor(shape: wShape)
                    rng.fillUniform(&w, -0.5, 0.5)
                    let g = try ConvGeometry(input: x.shape, weight: wShape, stride: stride, padding: pad, dilation: dil, groups: groups)
                    let (fwd, bwd, dx, dw) = timeConv(g, x: x, w: w)
                    let flops = 2 * Double(g.macs)
                    rows.append([
                        "\(batch)x\(c)x\(size)x\(size)", name, String(format: "%.1f", Double(g.macs) / 1e6),
                        String(format: "%.2f", fwd.median * 1e3), String(format: "%.1f", flops / fwd.median / 1e9),
                        String(format: "%.2f", bwd.median * 1e3), String(format: "%.1f", 2 * flops / bwd.median / 1e9),
                        String(format: "%.2f", dx.median * 1e3), String(format: "%.2f", dw.median * 1e3),
                    ])
                }
            }
        }
        printTable(header: header, rows: rows)
        print("")
        // Before the layout comparison, whose cache-flushing buffer would dominate it.
        print(String(format: "peak resident memory: %.1f MB", Double(ResourceUsage.peakResidentBytes) / 1e6))
        if layouts {
            print("")
            try benchLayouts()
        }
        if panelProducts {
            print("")
            try benchPanelProducts()
        }
    }

    /// Forward, backward (input and weight gradients), and the two backward parts alone.
    private func timeConv(_ g: ConvGeometry, x: Tensor, w: Tensor) -> (TimingSummary, TimingSummary, TimingSummary, TimingSummary) {
        var y = [Float](repeating: 0, count: g.batch * g.outChannels * g.outHeight * g.outWidth)
        var dy = y
        for i in dy.indices { dy[i] = Float(i % 7) * 0.1 - 0.3 }
        var dx = [Float](repeating: 0, count: x.count)
        var dw = [Float](repeating: 0, count: w.count)
        let fwd = x.scalars.withUnsafeBufferPointer { xp in
            w.scalars.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    TimingSummary.measure(repeats: repeats) {
                        Conv2dKernels.forward(g, x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!)
                    }
                }
            }
        }
        let bwd = x.scalars.withUnsafeBufferPointer { xp in
            w.scalars.withUnsafeBufferPointer { wp in
                dy.withUnsafeBufferPointer { dyp in
                    dx.withUnsafeMutableBufferPointer { dxp in
                        dw.withUnsafeMutableBufferPointer { dwp in
                            let (dyb, wb, dxb, xb, dwb) = (dyp.baseAddress!, wp.baseAddress!, dxp.baseAddress!, xp.baseAddress!, dwp.baseAddress!)
                            let input = { Conv2dKernels.backwardInput(g, dy: dyb, w: wb, dx: dxb) }
                            let weight = { Conv2dKernels.backwardWeight(g, dy: dyb, x: xb, dw: dwb) }
                            return (TimingSummary.measure(repeats: repeats) { input(); weight() },
                                    TimingSummary.measure(repeats: repeats) { input() },
                                    TimingSummary.measure(repeats: repeats) { weight() })
                        }
                    }
                }
            }
        }
        return (fwd, bwd.0, bwd.1, bwd.2)
    }

    /// OpenBLAS sgemm GFLOP/s at a large square size and at DARTS-like 1x1-convolution shapes.
    private func benchSGEMM(threads: Int) {
        let shapes = [(1024, 1024, 1024), (64, 1024, 64), (16, 1024, 16)]
        var rows: [[String]] = []
        for (m, n, k) in shapes {
            let a = [Float](repeating: 0.5, count: m * k)
            let b = [Float](repeating: 0.25, count: k * n)
            var c = [Float](repeating: 0, count: m * n)
            var cells = ["sgemm M=\(m) N=\(n) K=\(k)"]
            for t in Set([1, threads]).sorted() {
                BLAS.setThreads(t)
                // Enough calls that one measurement lasts a few milliseconds.
                let calls = max(1, Int(2e8 / Double(2 * m * n * k)))
                let s = a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            TimingSummary.measure(repeats: repeats) {
                                for _ in 0..<calls {
                                    BLAS.sgemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                                               c: cp.baseAddress!, ldc: n)
                                }
                            }
                        }
                    }
                }
                cells.append("\(t) thread(s): \(String(format: "%.1f", 2 * Double(m * n * k) * Double(calls) / s.median / 1e9)) GFLOP/s")
            }
            rows.append(cells)
        }
        BLAS.setThreads(1)
        for r in rows { print(r.joined(separator: "  ")) }
    }
}

extension BenchKernels {
    /// Memory bandwidth by a STREAM-like triad, `a = b + s * c`, on one thread and on `threads`,
    /// each thread streaming its own contiguous part (the part it first touched).
    func benchTriad(threads: Int) {
        let n = triadMb * (1 << 20) / 4
        let a = UnsafeMutablePointer<Float>.allocate(capacity: n), b = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        let scalar: Float = 3
        Parallel.forChunks(n) { _, r in
            for i in r { a[i] = 0; b[i] = 1; c[i] = 2 }
        }
        var cells = ["triad a = b + s*c, 3 x \(triadMb) MB"]
        for t in Set([1, threads]).sorted() {
            Parallel.setThreads(t)
            let s = TimingSummary.measure(repeats: max(repeats, 3)) {
                Parallel.forChunks(n) { _, r in
                    for i in r { a[i] = b[i] + scalar * c[i] }
                }
            }
            cells.append("\(t) thread(s): \(String(format: "%.1f", 12 * Double(n) / s.median / 1e9)) GB/s")
        }
        Parallel.setThreads(threads)
        print(cells.joined(separator: "  "))
    }
}

/// Prints rows under a header, columns padded to their widest cell.
func printTable(header: [String], rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    func line(_ r: [String]) -> String {
        r.enumerated().map { i, cell in
            i < 2 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                  : String(repeating: " ", count: widths[i] - cell.count) + cell
        }.joined(separator: "  ")
    }
    print(line(header))
    for r in rows { print(line(r)) }
}
