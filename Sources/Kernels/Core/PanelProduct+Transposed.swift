/// C = A Bᵀ (or C += A Bᵀ), row-major, B given as [N, K]: a 1x1 convolution's per-sample weight
/// gradient dy xᵀ (A = dy [Cout, HW], B = x [Cin, HW], K = HW), on the panel kernel's plan.
///
/// OpenBLAS runs these products at 31-56 GFLOP/s where one side is thin (16x64x1024, the small
/// row's cell preprocessing at 32x32; 36x144x1024 and 36x36x1024 at the paper's), against 85-100
/// at square ones: it copies both operands into its panel layout on every call, and splits a
/// 16-row M into few blocks. This kernel first transposes B into `scratch` ([K, N rounded up to
/// 16], in 16 x 16 tiles of register shuffles; zero columns past N), then keeps a block of 8 rows
/// x 48 columns of C in 24 AVX-512 registers while it walks K: per k, 3 vector loads of Bᵀ, 8
/// broadcasts of A, 24 fused multiply-adds (the last one to four rows of M in a block of four).
/// A last part of at most 8 columns goes in 8-lane vectors, whose multiply-adds cost half a
/// 16-lane one on Zen 4: N = 36 takes 40 lanes, not 48 (36x36x1024 about 55 -> 63 GFLOP/s).
///
/// The arithmetic is that of OpenBLAS's blocked path with its AVX-512 kernels, SkylakeX and
/// Cooperlake (one sgemm kernel; Cooperlake is what OpenBLAS 0.3.21 runs on AMD Zen 4 and Cooper
/// Lake): K cut into pieces of at most the running kernel set's GEMM_Q (`depthPiece`: 448 for
/// SkylakeX, 320 for Cooperlake; `depthPieces`), each element a fused multiply-add chain from zero
/// in order of k over each piece, the pieces' chains added to C in order (the first one written
/// unless accumulating). `handlesTransposed` takes only products with M x N x K above 10^6, where
/// OpenBLAS uses that path rather than its small-matrix kernels, so where OpenBLAS runs those
/// kernels the results equal its own bit for bit (PanelProductTests checks that, and every element
/// against the chains everywhere; `scripts/test` runs those tests under both kernel sets on an
/// AVX-512 machine). OpenBLAS's AVX2 kernels (Haswell, Zen) compute other sums: there the results
/// agree to rounding only.
extension PanelProduct {
    /// OpenBLAS's largest K piece (its sgemm GEMM_Q) for the kernel set it runs, and the multiple
    /// a split piece is rounded up to (the kernels' M unroll).
    static let depthPiece = depthPiece(forCore: BLAS.coreName), depthUnroll = 16

    /// GEMM_Q of OpenBLAS's sgemm on x86-64 for a kernel set (`BLAS.coreName`): 448 for SkylakeX,
    /// 320 for Cooperlake and SapphireRapids (param.h, unchanged from 0.3.15 to 0.3.28); 320 for
    /// any other, whose kernels do not sum as these do anyway.
    static func depthPiece(forCore name: String) -> Int {
        name.lowercased() == "skylakex" ? 448 : 320
    }

    /// Whether OpenBLAS runs kernels whose arithmetic this file and `multiply` reproduce, so that
    /// the 1x1 products come out bit for bit as OpenBLAS's: its AVX-512 sets, SkylakeX and
    /// Cooperlake (SapphireRapids shares their sgemm kernel; not yet measured).
    public static var reproducesOpenBLAS: Bool {
        ["skylakex", "cooperlake", "sapphirerapids"].contains(BLAS.coreName.lowercased())
    }

    /// The K pieces OpenBLAS's blocked driver cuts k into: whole pieces while at least two remain,
    /// then the rest halved (rounded up to the unroll) when it exceeds one piece.
    static func depthPieces(_ k: Int, piece: Int = depthPiece) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var start = 0
        while start < k {
            let end = pieceEnd(start, k, piece: piece)
            pieces.append(start..<end)
            start = end
        }
        return pieces
    }

    /// The end of the K piece that starts at `start` (see `depthPieces`).
    @inline(__always)
    static func pieceEnd(_ start: Int, _ k: Int, piece: Int = depthPiece) -> Int {
        let rest = k - start
        if rest >= 2 * piece { return start + piece }
        if rest > piece { return start + (rest / 2 + depthUnroll - 1) / depthUnroll * depthUnroll }
        return k
    }

    /// Whether `multiplyTransposed` takes C[M, N] = A[M, K] B[N, K]ᵀ: K a multiple of 16 (the
    /// transpose's tiles), and M x N x K above 10^6 (OpenBLAS's blocked path, whose arithmetic it
    /// reproduces; below that OpenBLAS's small-matrix kernels are fast and sum differently).
    @inline(__always)
    public static func handlesTransposed(m: Int, n: Int, k: Int) -> Bool {
        m > 0 && n > 0 && k > 0 && k % 16 == 0 && m * n * k > 1_000_000
    }

    /// Whether the 1x1 convolutions' weight gradients should use `multiplyTransposed`.
    @inline(__always)
    public static func preferredTransposed(m: Int, n: Int, k: Int) -> Bool { isEnabled && handlesTransposed(m: m, n: n, k: k) }

    /// Floats of scratch `multiplyTransposed` needs: Bᵀ with N rounded up to 16.
    @inline(__always)
    public static func transposedScratch(n: Int, k: Int) -> Int { k * ((n + 15) & ~15) }

    private typealias V = SIMD16<Float>

    @inline(__always) private static func load<T: SIMD>(_: T.Type, _ p: UnsafePointer<Float>) -> T where T.Scalar == Float {
        UnsafeRawPointer(p).loadUnaligned(as: T.self)
    }

    @inline(__always) private static func store<T: SIMD>(_ v: T, _ p: UnsafeMutablePointer<Float>) where T.Scalar == Float {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: T.self)
    }

    /// t[p][j] = b[j][p] for j < n, p < k (k a multiple of 16), t's rows `pitch` wide (N rounded
    /// up to 16) with zeros past n. Each 16 x 16 tile goes through four rounds of even/odd unzips
    /// (each a two-register shuffle), which transpose it; the last tile's rows past n are zeros.
    static func transpose(_ b: UnsafePointer<Float>, ldb: Int, n: Int, k: Int, into t: UnsafeMutablePointer<Float>, pitch: Int) {
        var j = 0
        while j < pitch {
            let rows = min(16, n - j)
            var p = 0
            while p < k {
                @inline(__always) func row(_ r: Int) -> V { r < rows ? load(V.self, b + (j + r) * ldb + p) : V() }
                var r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5), r6 = row(6), r7 = row(7)
                var r8 = row(8), r9 = row(9), r10 = row(10), r11 = row(11), r12 = row(12), r13 = row(13), r14 = row(14)
                var r15 = row(15)
                for _ in 0..<4 {
                    // Row i of the next round: rows 2i and 2i+1's even elements (i < 8), or odd ones.
                    (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15) = (
                        V(lowHalf: r0.evenHalf, highHalf: r1.evenHalf), V(lowHalf: r2.evenHalf, highHalf: r3.evenHalf),
                        V(lowHalf: r4.evenHalf, highHalf: r5.evenHalf), V(lowHalf: r6.evenHalf, highHalf: r7.evenHalf),
                        V(lowHalf: r8.evenHalf, highHalf: r9.evenHalf), V(lowHalf: r10.evenHalf, highHalf: r11.evenHalf),
                        V(lowHalf: r12.evenHalf, highHalf: r13.evenHalf), V(lowHalf: r14.evenHalf, highHalf: r15.evenHalf),
                        V(lowHalf: r0.oddHalf, highHalf: r1.oddHalf), V(lowHalf: r2.oddHalf, highHalf: r3.oddHalf),
                        V(lowHalf: r4.oddHalf, highHalf: r5.oddHalf), V(lowHalf: r6.oddHalf, highHalf: r7.oddHalf),
                        V(lowHalf: r8.oddHalf, highHalf: r9.oddHalf), V(lowHalf: r10.oddHalf, highHalf: r11.oddHalf),
                        V(lowHalf: r12.oddHalf, highHalf: r13.oddHalf), V(lowHalf: r14.oddHalf, highHalf: r15.oddHalf))
                }
                let out = t + p * pitch + j
                store(r0, out); store(r1, out + pitch); store(r2, out + 2 * pitch); store(r3, out + 3 * pitch)
                store(r4, out + 4 * pitch); store(r5, out + 5 * pitch); store(r6, out + 6 * pitch); store(r7, out + 7 * pitch)
                store(r8, out + 8 * pitch); store(r9, out + 9 * pitch); store(r10, out + 10 * pitch); store(r11, out + 11 * pitch)
                store(r12, out + 12 * pitch); store(r13, out + 13 * pitch); store(r14, out + 14 * pitch); store(r15, out + 15 * pitch)
                p += 16
            }
            j += 16
        }
    }

    /// C[M, N] = A[M, K] B[N, K]ᵀ (added to C with `accumulate`); lda, ldb, ldc: row strides;
    /// scratch: at least `transposedScratch(n:k:)` floats.
    public static func multiplyTransposed(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                          b: UnsafePointer<Float>, ldb: Int,
                                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                                          scratch: UnsafeMutablePointer<Float>) {
        precondition(handlesTransposed(m: m, n: n, k: k) && lda >= k && ldb >= k && ldc >= n,
                     "PanelProduct.multiplyTransposed: K a multiple of 16, M x N x K above 10^6, strides at least the rows")
        let pitch = (n + 15) & ~15
        transpose(b, ldb: ldb, n: n, k: k, into: scratch, pitch: pitch)
        var start = 0
        while start < k {
            let piece = start..<pieceEnd(start, k)
            let add = accumulate || start > 0
            start = piece.upperBound
            var j = 0
            while j < n {
                // Columns left; a last part of at most 8 columns goes in a half-width (8-lane)
                // vector, whose multiply-adds cost half a full one on Zen 4 (N = 36: 16 + 16 + 8
                // lanes, not 48; N = 72: 48 + 16 + 8, not 80).
                let left = n - j
                if left > 32 {
                    if left <= 40 {
                        rowBlocks3(SIMD8<Float>.self, m: m, piece: piece, a: a, lda: lda, bt: scratch + j, pitch: pitch, c: c + j,
                                   ldc: ldc, columns: left, add: add)
                    } else {
                        rowBlocks3(V.self, m: m, piece: piece, a: a, lda: lda, bt: scratch + j, pitch: pitch, c: c + j, ldc: ldc,
                                   columns: left, add: add)
                    }
                    j += 48
                } else if left > 8 {
                    rowBlocks1(V.self, m: m, piece: piece, a: a, lda: lda, bt: scratch + j, pitch: pitch, c: c + j, ldc: ldc,
                               columns: left, add: add)
                    j += 16
                } else {
                    rowBlocks1(SIMD8<Float>.self, m: m, piece: piece, a: a, lda: lda, bt: scratch + j, pitch: pitch, c: c + j,
                               ldc: ldc, columns: left, add: add)
                    j += 8
                }
            }
        }
    }

    /// Stores v's first `columns` lanes (all of them when `columns` is at least its width) at p,
    /// or adds them.
    @inline(__always)
    private static func put<T: SIMD>(_ v: T, _ p: UnsafeMutablePointer<Float>, columns: Int, add: Bool) where T.Scalar == Float {
        if columns >= T.scalarCount {
            store(add ? load(T.self, p) + v : v, p)
        } else if columns > 0 {
            for lane in 0..<columns { p[lane] = add ? p[lane] + v[lane] : v[lane] }
        }
    }


    /// Rows of A against 48 columns of Bᵀ (two vectors and a third of type T: 16 or 8 lanes, so
    /// 48 or 40 columns), 8 rows at a time; rows past M repeat row M-1 and are not stored.
    @inline(__always)
    private static func rowBlocks3<T: SIMD>(_ tail: T.Type, m: Int, piece: Range<Int>, a: UnsafePointer<Float>, lda: Int,
                                            bt: UnsafePointer<Float>, pitch: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                                            columns: Int, add: Bool) where T.Scalar == Float {
        var i = 0
        while i < m {
            // The last one to four rows in a block of four (M = 36 would otherwise compute four
            // rows of eight twice over).
            if m - i <= 4 {
                rowBlock3(Rows4.self, tail, i, m: m, piece: piece, a: a, lda: lda, bt: bt, pitch: pitch, c: c, ldc: ldc, columns: columns, add: add)
                return
            }
            rowBlock3(Rows8.self, tail, i, m: m, piece: piece, a: a, lda: lda, bt: bt, pitch: pitch, c: c, ldc: ldc, columns: columns, add: add)
            i += 8
        }
    }

    /// Rows i..<min(i + H.rows, m) of `rowBlocks3`, H.rows (8 or 4) rows x 48 (or 40) columns;
    /// each height and third vector its own specialised copy (see `BlockHeight`).
    private static func rowBlock3<H: BlockHeight, T: SIMD>(_: H.Type, _: T.Type, _ i: Int, m: Int, piece: Range<Int>,
                                                           a: UnsafePointer<Float>, lda: Int,
                                                           bt: UnsafePointer<Float>, pitch: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                                                           columns: Int, add: Bool) where T.Scalar == Float {
        let height = H.rows, last = m - 1
        let a0 = a + i * lda, a1 = a + min(i + 1, last) * lda, a2 = a + min(i + 2, last) * lda, a3 = a + min(i + 3, last) * lda
        let a4 = a + min(i + 4, last) * lda, a5 = a + min(i + 5, last) * lda, a6 = a + min(i + 6, last) * lda
        let a7 = a + min(i + 7, last) * lda
        var c00 = V(), c01 = V(), c02 = T(), c10 = V(), c11 = V(), c12 = T()
        var c20 = V(), c21 = V(), c22 = T(), c30 = V(), c31 = V(), c32 = T()
        var c40 = V(), c41 = V(), c42 = T(), c50 = V(), c51 = V(), c52 = T()
        var c60 = V(), c61 = V(), c62 = T(), c70 = V(), c71 = V(), c72 = T()
        var row = bt + piece.lowerBound * pitch
        for p in piece {
            let b0 = load(V.self, row), b1 = load(V.self, row + 16), b2 = load(T.self, row + 32)
            row += pitch
            // Each row's a[p] broadcast to both widths (the narrow one is the wide one's low half).
            @inline(__always) func rowProducts(_ x: Float, _ v0: inout V, _ v1: inout V, _ v2: inout T) {
                let s = V(repeating: x)
                v0.addProduct(s, b0); v1.addProduct(s, b1); v2.addProduct(T(repeating: x), b2)
            }
            rowProducts(a0[p], &c00, &c01, &c02)
            rowProducts(a1[p], &c10, &c11, &c12)
            rowProducts(a2[p], &c20, &c21, &c22)
            rowProducts(a3[p], &c30, &c31, &c32)
            if height > 4 {
                rowProducts(a4[p], &c40, &c41, &c42)
                rowProducts(a5[p], &c50, &c51, &c52)
                rowProducts(a6[p], &c60, &c61, &c62)
                rowProducts(a7[p], &c70, &c71, &c72)
            }
        }
        @inline(__always) func store(_ r: Int, _ v0: V, _ v1: V, _ v2: T) {
            guard r < height && i + r < m else { return }
            let out = c + (i + r) * ldc
            put(v0, out, columns: columns, add: add)
            put(v1, out + 16, columns: columns - 16, add: add)
            put(v2, out + 32, columns: columns - 32, add: add)
        }
        store(0, c00, c01, c02); store(1, c10, c11, c12); store(2, c20, c21, c22); store(3, c30, c31, c32)
        store(4, c40, c41, c42); store(5, c50, c51, c52); store(6, c60, c61, c62); store(7, c70, c71, c72)
    }

    /// Rows of A against 16 (or, with T = SIMD8, 8) columns of Bᵀ (one vector), 8 rows at a time.
    @inline(__always)
    private static func rowBlocks1<T: SIMD>(_: T.Type, m: Int, piece: Range<Int>, a: UnsafePointer<Float>, lda: Int,
                                            bt: UnsafePointer<Float>, pitch: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                                            columns: Int, add: Bool) where T.Scalar == Float {
        var i = 0
        let last = m - 1
        while i < m {
            let a0 = a + i * lda, a1 = a + min(i + 1, last) * lda, a2 = a + min(i + 2, last) * lda, a3 = a + min(i + 3, last) * lda
            let a4 = a + min(i + 4, last) * lda, a5 = a + min(i + 5, last) * lda, a6 = a + min(i + 6, last) * lda
            let a7 = a + min(i + 7, last) * lda
            var c0 = T(), c1 = T(), c2 = T(), c3 = T(), c4 = T(), c5 = T(), c6 = T(), c7 = T()
            var row = bt + piece.lowerBound * pitch
            for p in piece {
                let b0 = load(T.self, row)
                row += pitch
                c0.addProduct(T(repeating: a0[p]), b0); c1.addProduct(T(repeating: a1[p]), b0)
                c2.addProduct(T(repeating: a2[p]), b0); c3.addProduct(T(repeating: a3[p]), b0)
                c4.addProduct(T(repeating: a4[p]), b0); c5.addProduct(T(repeating: a5[p]), b0)
                c6.addProduct(T(repeating: a6[p]), b0); c7.addProduct(T(repeating: a7[p]), b0)
            }
            @inline(__always) func store(_ r: Int, _ v: T) {
                if i + r < m { put(v, c + (i + r) * ldc, columns: columns, add: add) }
            }
            store(0, c0); store(1, c1); store(2, c2); store(3, c3); store(4, c4); store(5, c5); store(6, c6); store(7, c7)
            i += 8
        }
    }
}
