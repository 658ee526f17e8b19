@testable import Kernels
import XCTest
import _TestSupport

/// The 1x1 convolutions' own product kernel: one fused multiply-add chain per element, in order
/// of k (the arithmetic of OpenBLAS's FMA kernels), written within its rows and columns only.
final class PanelProductTests: XCTestCase {
    /// Each element bit for bit the chain fma(a[i][k-1], b[k-1][j], ... fma(a[i][0], b[0][j], 0)),
    /// plus C's old value when accumulating; strides wider than the rows; nothing outside the
    /// m x n block of C written (row counts that are and are not multiples of the kernel's 6).
    func testEveryElementIsOneFusedChainInOrderOfK() {
        let shapes = [(1, 64, 1), (2, 64, 7), (3, 64, 3), (7, 64, 5), (6, 128, 36), (10, 128, 12), (13, 256, 20), (16, 64, 320), (36, 1024, 9)]
        for (m, n, k) in shapes {
            let (lda, ldb, ldc) = (k + 3, n + 16, n + 32)
            let a = randomTensor([m * lda], seed: 1).scalars, b = randomTensor([k * ldb], seed: 2).scalars
            let prior = randomTensor([m * ldc + 64], seed: 3).scalars
            for accumulate in [false, true] {
                var c = prior
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    PanelProduct.multiply(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                          c: cp.baseAddress!, ldc: ldc, accumulate: accumulate)
                } } }
                let wrong = mismatches(c, prior: prior, m: m, n: n, ldc: ldc) { i, j in
                    var chain: Float = 0
                    for p in 0..<k { chain = chain.addingProduct(a[i * lda + p], b[p * ldb + j]) }
                    return accumulate ? prior[i * ldc + j] + chain : chain
                }
                XCTAssertEqual(wrong, 0, "\(m)x\(n)x\(k), accumulate \(accumulate)")
            }
        }
    }

    func testTakesOnlyWholeColumnBlocksAndBoundedDepth() {
        XCTAssertTrue(PanelProduct.handles(n: 64, k: 1))
        XCTAssertTrue(PanelProduct.handles(n: 1024, k: PanelProduct.maxDepth))
        XCTAssertFalse(PanelProduct.handles(n: 784, k: 8), "28x28 planes are not a multiple of 64 columns")
        XCTAssertFalse(PanelProduct.handles(n: 64, k: PanelProduct.maxDepth + 1))
        XCTAssertFalse(PanelProduct.handles(n: 0, k: 8))
        XCTAssertFalse(PanelProduct.handles(n: 64, k: 0))
    }

    /// A 1x1 convolution's forward and gradients with the kernel on and off (its forward product
    /// and input gradient run on the kernel, the weight gradient on OpenBLAS either way): the same
    /// values to rounding, bit for bit where OpenBLAS runs its AVX-512 kernels (SkylakeX,
    /// Cooperlake: `PanelProduct.reproducesOpenBLAS`; its AVX2 ones compute other sums, so
    /// `scripts/test` runs this under OPENBLAS_CORETYPE=Haswell too). x is read twice, so its
    /// gradient's second product is added onto the first (the kernel's `accumulate`).
    func testPointwiseConvolutionAgreesWithTheOpenBLASPath() throws {
        let x = randomTensor([3, 20, 16, 16], seed: 4), w = randomTensor([14, 20, 1, 1], seed: 5)
        let r = randomTensor([3, 14, 16, 16], seed: 6)
        func run(_ enabled: Bool) throws -> [Tensor] {
            try withPanelProduct(enabled) {
                let (xv, wv) = (leaf(x), leaf(w))
                let tape = Tape()
                let y = try tape.add(try tape.conv2d(xv, wv), try tape.conv2d(xv, wv))
                try tape.backward(y, gradient: r)
                return [y.value, xv.grad!, wv.grad!]
            }
        }
        let (panel, blas) = (try run(true), try run(false))
        for (p, q) in zip(panel, blas) {
            if PanelProduct.reproducesOpenBLAS { XCTAssertEqual(p, q, "OpenBLAS \(BLAS.coreName) runs the kernel's chains: bit for bit") }
            assertClose(p.scalars, q.scalars, tolerance: 1e-4)
        }
    }

    /// OpenBLAS's K pieces: whole pieces of its GEMM_Q (Cooperlake 320, SkylakeX 448) while two
    /// remain, then halves rounded up to 16; the piece of the kernel set OpenBLAS runs.
    func testDepthPiecesFollowOpenBLASsBlocking() {
        XCTAssertEqual(PanelProduct.depthPiece(forCore: "Cooperlake"), 320)
        XCTAssertEqual(PanelProduct.depthPiece(forCore: "SkylakeX"), 448)
        XCTAssertEqual(PanelProduct.depthPiece, PanelProduct.depthPiece(forCore: BLAS.coreName))
        XCTAssertEqual(PanelProduct.depthPieces(64, piece: 320), [0..<64])
        XCTAssertEqual(PanelProduct.depthPieces(320, piece: 320), [0..<320])
        XCTAssertEqual(PanelProduct.depthPieces(384, piece: 320), [0..<192, 192..<384])
        XCTAssertEqual(PanelProduct.depthPieces(656, piece: 320), [0..<320, 320..<496, 496..<656])
        XCTAssertEqual(PanelProduct.depthPieces(1024, piece: 320), [0..<320, 320..<640, 640..<832, 832..<1024])
        XCTAssertEqual(PanelProduct.depthPieces(448, piece: 448), [0..<448])
        XCTAssertEqual(PanelProduct.depthPieces(656, piece: 448), [0..<336, 336..<656])
        XCTAssertEqual(PanelProduct.depthPieces(1024, piece: 448), [0..<448, 448..<736, 736..<1024])
        XCTAssertTrue(PanelProduct.handlesTransposed(m: 36, n: 36, k: 1024))
        XCTAssertFalse(PanelProduct.handlesTransposed(m: 16, n: 16, k: 1024), "OpenBLAS's small-matrix kernels' size")
        XCTAssertFalse(PanelProduct.handlesTransposed(m: 100, n: 100, k: 104), "K not a multiple of 16")
    }

    /// The weight gradient's kernel, C = A Bᵀ: each element bit for bit the chains over
    /// `depthPieces(k)`, each from zero, added to C in order (the first one written unless
    /// accumulating); strides wider than the rows; nothing outside the m x n block written; N on and
    /// off the 16-wide tiles and the 48-wide column blocks, with last parts of 1-8 columns (8-lane
    /// vectors: N = 36, 40, 52, 56, 100, 130, 180) and of 9-16 (N = 44, 250); M on and off the
    /// blocks of 8.
    func testTransposedProductIsOneChainPerPieceAddedInOrder() {
        let shapes = [(13, 100, 1024), (36, 36, 1024), (8, 130, 1024), (9, 180, 656), (64, 250, 64), (17, 64, 1024), (20, 52, 1024),
                      (24, 44, 1024), (24, 56, 1024), (32, 40, 1024)]
        for (m, n, k) in shapes {
            XCTAssertTrue(PanelProduct.handlesTransposed(m: m, n: n, k: k), "\(m)x\(n)x\(k)")
            let (lda, ldb, ldc) = (k + 16, k + 32, n + 5)
            let a = randomTensor([m * lda], seed: 11).scalars, b = randomTensor([n * ldb], seed: 12).scalars
            let prior = randomTensor([m * ldc + 64], seed: 13).scalars
            var scratch = [Float](repeating: .nan, count: PanelProduct.transposedScratch(n: n, k: k))
            for accumulate in [false, true] {
                var c = prior
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        PanelProduct.multiplyTransposed(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                                                        c: cp.baseAddress!, ldc: ldc, accumulate: accumulate, scratch: sp.baseAddress!)
                    }
                } } }
                let pieces = PanelProduct.depthPieces(k)
                let wrong = mismatches(c, prior: prior, m: m, n: n, ldc: ldc) { i, j in
                    var expected = prior[i * ldc + j]
                    for (number, piece) in pieces.enumerated() {
                        var chain: Float = 0
                        for p in piece { chain = chain.addingProduct(a[i * lda + p], b[j * ldb + p]) }
                        expected = number == 0 && !accumulate ? chain : expected + chain
                    }
                    return expected
                }
                XCTAssertEqual(wrong, 0, "\(m)x\(n)x\(k), accumulate \(accumulate)")
            }
        }
    }

    /// A 1x1 convolution's and a fused depthwise+1x1's gradients with the kernels on and off, at
    /// shapes whose weight gradient runs on the transposed kernel: the same values to rounding,
    /// bit for bit where OpenBLAS runs its SkylakeX or Cooperlake kernels (whose K pieces, 448 and
    /// 320, the kernel takes: K = 1024 is cut differently by each).
    func testWeightGradientAgreesWithTheOpenBLASPath() throws {
        let x = randomTensor([2, 64, 32, 32], seed: 14), w = randomTensor([20, 64, 1, 1], seed: 15)
        let wd = randomTensor([64, 1, 3, 3], seed: 16)
        func run(_ enabled: Bool) throws -> [Tensor] {
            try withPanelProduct(enabled) {
                let (xv, wv, dv) = (leaf(x), leaf(w), leaf(wd))
                let tape = Tape()
                let y = try tape.add(try tape.conv2d(xv, wv),
                                     try tape.depthwisePointwiseConv2d(xv, depthwise: dv, pointwise: wv, padding: 1, reluInput: true))
                try tape.backward(y, gradient: randomTensor(y.shape, seed: 17))
                return [y.value, xv.grad!, wv.grad!, dv.grad!]
            }
        }
        let (panel, blas) = (try run(true), try run(false))
        for (p, q) in zip(panel, blas) {
            if PanelProduct.reproducesOpenBLAS { XCTAssertEqual(p, q, "OpenBLAS \(BLAS.coreName)'s K pieces: bit for bit") }
            assertClose(p.scalars, q.scalars, tolerance: 1e-4)
        }
    }

    func testGradientPointwiseThroughTheKernel() throws {
        let x = leaf(randomTensor([2, 3, 8, 8], seed: 7)), w = leaf(randomTensor([5, 3, 1, 1], seed: 8))
        try withPanelProduct(true) { try checkGradients([x, w]) { tape in try tape.conv2d(x, w) } }
    }

    /// A finite-difference check of a weight gradient on the transposed kernel (16 x 68 x 1024).
    func testGradientOfTheTransposedWeightProduct() throws {
        let x = leaf(randomTensor([1, 68, 32, 32], seed: 18)), w = leaf(randomTensor([16, 68, 1, 1], seed: 19))
        XCTAssertTrue(PanelProduct.handlesTransposed(m: 16, n: 68, k: 1024))
        try withPanelProduct(true) { try checkGradients([w]) { tape in try tape.conv2d(x, w) } }
    }

    /// The elements of c (m rows of ldc, then slack) whose bits differ from `expected(i, j)` inside
    /// the m x n block, or from `prior` outside it.
    private func mismatches(_ c: [Float], prior: [Float], m: Int, n: Int, ldc: Int, expected: (Int, Int) -> Float) -> Int {
        var count = 0
        for index in 0..<prior.count {
            let (i, j) = (index / ldc, index % ldc)
            let want = i < m && j < n ? expected(i, j) : prior[index]
            if c[index].bitPattern != want.bitPattern { count += 1 }
        }
        return count
    }
}
