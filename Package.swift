// swift-tools-version:6.0
//
// nas-mpi: differentiable architecture search (DARTS) as an MPI job.
// Targets depend one way: Kernels <- Distributed <- Search <- nas-mpi.
// Only Distributed imports the MPI C module.

import Foundation
import PackageDescription

/// The CPU the Swift kernels are compiled for, as GROMACS chooses its SIMD level: the build
/// machine's own (AVX-512 or AVX2, read from /proc/cpuinfo), or `NAS_MPI_TARGET_CPU` when set
/// (`generic` for a binary that runs on any x86-64, or an LLVM CPU name such as `haswell`).
/// The binary checks at start-up that the CPU it runs on has the instructions it was built for
/// and stops with a message otherwise, instead of dying of an illegal instruction.
let targetCPU: (name: String, level: Int)? = {
    let requested = ProcessInfo.processInfo.environment["NAS_MPI_TARGET_CPU"]
    if let requested {
        switch requested {
        case "", "generic": return nil
        case "native-avx512", "skylake-avx512": return ("skylake-avx512", 3)
        case "haswell", "native-avx2": return ("haswell", 2)
        default: return (requested, 0)
        }
    }
    #if arch(x86_64) && os(Linux)
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
    let flags = Set(line.split(separator: " ").map(String.init))
    if ["avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"].allSatisfy(flags.contains) { return ("skylake-avx512", 3) }
    if ["avx2", "fma"].allSatisfy(flags.contains) { return ("haswell", 2) }
    #endif
    return nil
}()

let swiftSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
] + (targetCPU.map { cpu in
    [.unsafeFlags(["-target-cpu", cpu.name], .when(configuration: .release)),
     .define("NAS_MPI_SIMD_LEVEL_\(cpu.level)", .when(configuration: .release))]
} ?? [])

let package = Package(
    name: "nas-mpi",
    // MARK: - Products
    products: [
        .executable(name: "nas-mpi", targets: ["nas-mpi"]),
        .library(name: "Kernels", targets: ["Kernels"]),
        .library(name: "Distributed", targets: ["Distributed"]),
        .library(name: "Search", targets: ["Search"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // MARK: - C libraries
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CMPI",
            path: "Sources/CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),

        // MARK: - Libraries
        // The kernels are optimised in debug builds too: their SIMD code (SIMD8 loads, selects,
        // lane arithmetic) runs through generic witnesses at -Onone, tens of times slower than
        // scalar loops, and every test that trains a network spends its time there.
        .target(name: "Kernels", dependencies: ["CBLAS"],
                swiftSettings: swiftSettings + [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "Distributed", dependencies: ["Kernels", "CMPI"], swiftSettings: swiftSettings),
        .target(name: "Search", dependencies: ["Kernels", "Distributed", "CZlib"], swiftSettings: swiftSettings),

        // MARK: - Command line
        .executableTarget(
            name: "nas-mpi",
            dependencies: [
                "Kernels", "Distributed", "Search",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: - Tests
        .target(name: "_TestSupport", dependencies: ["Kernels"], path: "Tests/_TestSupport"),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "_TestSupport"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "_TestSupport"]),
        .testTarget(name: "SearchTests", dependencies: ["Search", "_TestSupport"]),
        .testTarget(name: "NasMPITests", dependencies: ["Search", "_TestSupport"]),
        // Multi-rank checks: an executable run under `mpirun -np N` by scripts/test.
        .executableTarget(
            name: "mpi-tests",
            dependencies: ["Kernels", "Distributed", "Search"],
            path: "Tests/MPITests"
        ),
    ],
    swiftLanguageModes: [.v5]
)
