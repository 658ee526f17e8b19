import Foundation
import Kernels

/// Restarts the process once with a better `OPENBLAS_CORETYPE` when OpenBLAS picked kernels
/// narrower than the CPU supports (see `BLAS.betterCore`).
///
/// OpenBLAS reads `OPENBLAS_CORETYPE` in its library constructor, before `main`, so setting it
/// in-process is too late: the process re-executes itself (same pid, arguments and environment
/// plus the variable) before it parses arguments or initialises MPI. Under mpirun or srun each
/// rank decides for itself. A `OPENBLAS_CORETYPE` the user set is respected, and
/// `NAS_MPI_KEEP_BLAS_CORE=1` keeps OpenBLAS's own choice.
enum BLASKernelChoice {
    static func restartIfNeeded() {
        #if os(Linux)
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, env["NAS_MPI_KEEP_BLAS_CORE"] == nil,
              env[BLAS.detectedCoreVariable] == nil else { return }
        let current = BLAS.coreName
        guard let better = BLAS.betterCore(than: current, simdLevel: BLAS.simdLevel) else { return }
        // Exec the binary by its real path, not /proc/self/exe: the kernel names the process after
        // the path's last component, and ps, top, pgrep, schedulers and our own tests look for
        // "nas-mpi", not "exe".
        guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return }
        setenv("OPENBLAS_CORETYPE", better, 1)
        setenv(BLAS.detectedCoreVariable, current, 1)
        execv(path, CommandLine.unsafeArgv)
        // Only reached if exec failed: go on with OpenBLAS's choice.
        unsetenv("OPENBLAS_CORETYPE")
        unsetenv(BLAS.detectedCoreVariable)
        #endif
    }
}
