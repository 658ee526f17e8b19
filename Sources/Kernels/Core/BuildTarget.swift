import Foundation

/// The CPU the Swift code of this binary was compiled for (see `targetCPU` in Package.swift).
public enum BuildTarget {
    /// The SIMD level the release build was compiled for: 0 any x86-64, 2 AVX2 with FMA, 3 AVX-512.
    public static let simdLevel: Int = {
        #if NAS_MPI_SIMD_LEVEL_3
        return 3
        #elseif NAS_MPI_SIMD_LEVEL_2
        return 2
        #else
        return 0
        #endif
    }()

    /// For logs: "any x86-64", "AVX2", "AVX-512".
    public static var description: String {
        switch simdLevel {
        case 3: return "AVX-512"
        case 2: return "AVX2"
        default: return "any x86-64"
        }
    }

    /// Nil when this CPU runs the binary's instructions, else the message to stop with.
    public static func unsupportedMessage(cpuLevel: Int = BLAS.simdLevel) -> String? {
        guard cpuLevel < simdLevel else { return nil }
        let names = ["no AVX", "AVX", "AVX2", "AVX-512"]
        return "this nas-mpi was compiled for \(description) (the build machine's CPU), but this CPU has \(names[max(0, min(cpuLevel, 3))]): "
            + "rebuild it here, or build a portable binary with NAS_MPI_TARGET_CPU=generic swift build -c release"
    }
}
