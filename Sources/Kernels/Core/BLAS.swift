import CBLAS
import Foundation

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

// MARK: - Which OpenBLAS kernels run

extension BLAS {
    /// The kernel set OpenBLAS chose when it was loaded ("SkylakeX", "Haswell", "Prescott", ...).
    public static var coreName: String {
        guard let s = openblas_get_corename() else { return "unknown" }
        return String(cString: s)
    }

    /// The widest SIMD level this CPU and its operating system support: 0 none (or not x86),
    /// 1 AVX, 2 AVX2 with FMA, 3 AVX-512 (F, DQ, BW, VL).
    public static var simdLevel: Int { Int(nasmpi_cpu_simd_level()) }

    /// The SIMD level of an OpenBLAS kernel set by its core name; nil for a name not listed here.
    static func simdLevel(ofCore name: String) -> Int? {
        switch name.lowercased() {
        case "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
             "dunnington", "nehalem", "opteron", "opteron_sse3", "barcelona", "bobcat", "athlon", "nano":
            return 0
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator":
            return 1
        case "haswell", "zen":
            return 2
        case "skylakex", "cooperlake", "sapphirerapids":
            return 3
        default:
            return nil
        }
    }

    /// The OpenBLAS core type (a value for `OPENBLAS_CORETYPE`) to ask for when OpenBLAS runs its
    /// SSE-only kernels on a machine with AVX or wider, else nil.
    ///
    /// OpenBLAS picks its kernels by CPU model number at load time. A release older than the CPU
    /// (Debian 12's 0.3.21 on Emerald Rapids, for one) does not know the model and falls back to
    /// its SSE "Prescott" kernels: a quarter of the machine's sgemm rate. The SIMD flags say what
    /// the CPU can run; this maps them to the widest kernel set of that level that OpenBLAS has
    /// had for years (SkylakeX, Haswell, Sandybridge). A core name this table does not know is
    /// left alone.
    public static func betterCore(than core: String, simdLevel: Int) -> String? {
        // Only an SSE-only choice is overridden: that is OpenBLAS's fallback for a CPU it does not
        // know. An AVX or AVX2 choice on an AVX-512 CPU may be deliberate (a build without the
        // SkylakeX kernels, a CPU where OpenBLAS prefers them) and is left alone.
        guard Self.simdLevel(ofCore: core) == 0, simdLevel > 0 else { return nil }
        switch simdLevel {
        case 3: return "SkylakeX"
        case 2: return "Haswell"
        case 1: return "Sandybridge"
        default: return nil
        }
    }

    /// One line for logs: the kernel set in use and, when nas-mpi chose it, what OpenBLAS had chosen.
    public static var kernelDescription: String {
        let env = ProcessInfo.processInfo.environment
        var line = "OpenBLAS \(coreName) kernels"
        if let detected = env[BLAS.detectedCoreVariable] {
            line += " (OpenBLAS chose \(detected) for this CPU; nas-mpi set OPENBLAS_CORETYPE to match its SIMD level \(simdLevel))"
        }
        return line + "; Swift kernels compiled for \(BuildTarget.description)"
    }

    /// Set by the command line when it restarted itself with a better `OPENBLAS_CORETYPE`: the
    /// core OpenBLAS had chosen on its own.
    public static let detectedCoreVariable = "NAS_MPI_BLAS_DETECTED_CORE"
}
