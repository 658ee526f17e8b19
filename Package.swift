// swift-tools-version:6.0
//
// nas-mpi: differentiable architecture search (DARTS) as an MPI job.
// Targets depend one way: Kernels <- Distributed <- Search <- nas-mpi.
// Only Distributed imports the MPI C module.

import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
]

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
        .target(name: "Kernels", dependencies: ["CBLAS"], swiftSettings: swiftSettings),
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
