import CBLAS
import Foundation

/// C = A B (or C += A B), row-major, for the per-sample products of a 1x1 convolution: A the
/// weights (or their transpose, a few KB), B one sample's planes [K, N], C its output planes
/// [M, N], with N = H x W a multiple of 64 and K at most `maxDepth`.
///
/// At these shapes (M and K = 16 to 288, N = 64 to 1024) OpenBLAS's per-call work (copying the
/// operands into its panel layout, zeroing C before a beta = 0 product) is large against a
/// product with K = 36. This kernel reads B's rows where they lie and keeps a block of 6 rows x
/// 64 columns of C in 24 AVX-512 registers while it walks K: per k, 4 vector loads of B, 6
/// broadcasts of A, 24 fused multiply-adds (the last one to four rows of M in a block of four, so
/// that M = 16 or 32 computes no row twice). Row blocks are the outer loop, so a block's six rows
/// of C are written left to right (six sequential write streams) and B, one sample's planes (at
/// most 576 KB at the DARTS shapes), stays in L2 between row blocks.
///
/// Each element of C is the chain fma(a[i][K-1], b[K-1][j], ... fma(a[i][0], b[0][j], 0)), in
/// order of k, with C's old value added after the chain when accumulating: the arithmetic of
/// OpenBLAS's AVX-512 sgemm kernel (its SkylakeX and Cooperlake sets) for a K it does not split.
/// PanelProductTests checks every element against that chain; `nas-mpi bench kernels` compares
/// the kernel with OpenBLAS at the paper network's shapes (bit-identical at each it takes where
/// OpenBLAS runs those kernels, `reproducesOpenBLAS`, which its command-line test checks), so there
/// the fixed-seed results of a search or a training run do not depend on which one ran.
/// OpenBLAS's AVX2 kernels (Haswell, Zen; an AVX2 machine, where this kernel is off by default)
/// compute other sums: at no shape measured do they agree bit for bit, at all to rounding.
public enum PanelProduct {
    /// The deepest product taken. Beyond it OpenBLAS's blocked path cuts K into pieces and adds
    /// their chains (its results then differ from one chain): its Cooperlake kernels, which it runs
    /// on AMD Zen 4, cut any K above 320 (a K of 384 into two halves; its SkylakeX kernels any K
    /// above 448), so 320 keeps the kernel bit-identical under both. A deeper B would not stay
    /// in L2 either. (OpenBLAS's small-matrix path, for M x N x K up to about 10^6, keeps one
    /// chain at any K; `nas-mpi bench kernels` shows which agree.)
    public static let maxDepth = 320

    /// Used by the 1x1 convolutions when true: by default in builds for AVX-512 (where each SIMD16
    /// is one register and `addProduct` one instruction). `NAS_MPI_PANEL_PRODUCT=0` asks for
    /// OpenBLAS (for comparisons), `=1` for the kernel in any build (the test script runs the
    /// kernel tests that way too: correct everywhere, fast only with AVX-512).
    nonisolated(unsafe) public static var isEnabled: Bool = {
        switch ProcessInfo.processInfo.environment["NAS_MPI_PANEL_PRODUCT"] {
        case "0": return false
        case "1": return true
        default: return BuildTarget.simdLevel == 3
        }
    }()

    /// Whether `multiply` takes a product of these dimensions.
    @inline(__always)
    public static func handles(n: Int, k: Int) -> Bool {
        n % 64 == 0 && n > 0 && k > 0 && k <= maxDepth
    }

    /// Whether the 1x1 convolutions should use `multiply` for these dimensions.
    @inline(__always)
    public static func preferred(n: Int, k: Int) -> Bool { isEnabled && handles(n: n, k: k) }

    private typealias V = SIMD16<Float>

    @inline(__always) private static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always) private static func store(_ v: V, _ p: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let raw = UnsafeMutableRawPointer(p)
        raw.storeBytes(of: accumulate ? raw.loadUnaligned(as: V.self) + v : v, as: V.self)
    }

    /// C[M, N] = A[M, K] B[K, N] (added to C with `accumulate`); lda, ldb, ldc: row strides.
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                b: UnsafePointer<Float>, ldb: Int,
                                c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        precondition(handles(n: n, k: k) && m >= 0 && lda >= k && ldb >= n && ldc >= n,
                     "PanelProduct.multiply: N a multiple of 64, 0 < K <= \(maxDepth), strides at least the rows")
        var i = 0
        while i < m {
            // The last one to four rows in a block of four (M = 16 or 32 would otherwise compute
            // two rows of six twice over).
            if m - i <= 4 {
                rowBlock(Rows4.self, i, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate)
                return
            }
            rowBlock(Rows6.self, i, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate)
            i += 6
        }
    }

    /// Rows i..<min(i + H.rows, m) of `multiply`, H.rows (6 or 4) rows x 64 columns at a time;
    /// rows past M repeat row M-1 and are not stored. H is a type so that each height is its own
    /// specialised copy, with the branches on the height folded away.
    private static func rowBlock<H: BlockHeight>(_: H.Type, _ i: Int, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                 b: UnsafePointer<Float>, ldb: Int,
                                 c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let height = H.rows
        let rows = min(height, m - i), last = m - 1
        let a0 = a + i * lda, a1 = a + min(i + 1, last) * lda, a2 = a + min(i + 2, last) * lda
        let a3 = a + min(i + 3, last) * lda, a4 = a + min(i + 4, last) * lda, a5 = a + min(i + 5, last) * lda
        var j = 0
        while j < n {
            var c00 = V(), c01 = V(), c02 = V(), c03 = V()
            var c10 = V(), c11 = V(), c12 = V(), c13 = V()
            var c20 = V(), c21 = V(), c22 = V(), c23 = V()
            var c30 = V(), c31 = V(), c32 = V(), c33 = V()
            var c40 = V(), c41 = V(), c42 = V(), c43 = V()
            var c50 = V(), c51 = V(), c52 = V(), c53 = V()
            var row = b + j
            // This block's lines of C, asked for before the k loop so that they arrive (from
            // memory, for an op's fresh output) while it runs, not when the stores reach them:
            // the block's rows are 6 write streams at a 4 KB stride, 256 bytes per block.
            let out = c + i * ldc + j
            for r in 0..<rows {
                let p = out + r * ldc
                nasmpi_prefetch_write(p); nasmpi_prefetch_write(p + 16); nasmpi_prefetch_write(p + 32); nasmpi_prefetch_write(p + 48)
            }
            // The first row block reads this column block of B from memory (a sample's
            // planes, last written by another op): it asks for the next block's lines as it
            // goes, K rows of 256 bytes at a 4 KB stride that the hardware prefetcher does
            // not follow. The later row blocks find B in L2.
            let first = i == 0 && j + 64 < n
            for p in 0..<k {
                let b0 = load(row), b1 = load(row + 16), b2 = load(row + 32), b3 = load(row + 48)
                if first {
                    nasmpi_prefetch(row + 64); nasmpi_prefetch(row + 80); nasmpi_prefetch(row + 96); nasmpi_prefetch(row + 112)
                }
                row += ldb
                var s = V(repeating: a0[p])
                c00.addProduct(s, b0); c01.addProduct(s, b1); c02.addProduct(s, b2); c03.addProduct(s, b3)
                s = V(repeating: a1[p])
                c10.addProduct(s, b0); c11.addProduct(s, b1); c12.addProduct(s, b2); c13.addProduct(s, b3)
                s = V(repeating: a2[p])
                c20.addProduct(s, b0); c21.addProduct(s, b1); c22.addProduct(s, b2); c23.addProduct(s, b3)
                s = V(repeating: a3[p])
                c30.addProduct(s, b0); c31.addProduct(s, b1); c32.addProduct(s, b2); c33.addProduct(s, b3)
                if height > 4 {
                    s = V(repeating: a4[p])
                    c40.addProduct(s, b0); c41.addProduct(s, b1); c42.addProduct(s, b2); c43.addProduct(s, b3)
                    s = V(repeating: a5[p])
                    c50.addProduct(s, b0); c51.addProduct(s, b1); c52.addProduct(s, b2); c53.addProduct(s, b3)
                }
            }
            @inline(__always) func put(_ r: Int, _ v0: V, _ v1: V, _ v2: V, _ v3: V) {
                let p = out + r * ldc
                store(v0, p, accumulate: accumulate); store(v1, p + 16, accumulate: accumulate)
                store(v2, p + 32, accumulate: accumulate); store(v3, p + 48, accumulate: accumulate)
            }
            put(0, c00, c01, c02, c03)
            if rows > 1 { put(1, c10, c11, c12, c13) }
            if rows > 2 { put(2, c20, c21, c22, c23) }
            if rows > 3 { put(3, c30, c31, c32, c33) }
            if rows > 4 { put(4, c40, c41, c42, c43) }
            if rows > 5 { put(5, c50, c51, c52, c53) }
            j += 64
        }
    }
}

/// The height of a kernel's block of rows, as a type (see `PanelProduct.rowBlock`).
protocol BlockHeight { static var rows: Int { get } }
enum Rows4: BlockHeight { static var rows: Int { 4 } }
enum Rows6: BlockHeight { static var rows: Int { 6 } }
enum Rows8: BlockHeight { static var rows: Int { 8 } }
