import CBLAS

/// Thin wrappers over OpenBLAS's CBLAS, row-major.
public enum BLAS {
    /// C = alpha * op(A) * op(B) + beta * C, all row-major.
    ///
    /// - Parameters:
    ///   - transA: use Aᵀ; A is stored [M, K] (or [K, M] when transposed) with leading dimension lda.
    ///   - transB: use Bᵀ; B is stored [K, N] (or [N, K] when transposed) with leading dimension ldb.
    @inline(__always)
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        if k == 0 {
            if beta == 0 { c.update(repeating: 0, count: m * ldc) }
            return
        }
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The number of threads OpenBLAS uses for one call.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Sets OpenBLAS's own thread count (nas-mpi keeps it at 1 except in benchmarks).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    /// The OpenBLAS build's configuration string (version, core, threading).
    public static var configuration: String {
        guard let s = openblas_get_config() else { return "unknown" }
        return String(cString: s)
    }
}
