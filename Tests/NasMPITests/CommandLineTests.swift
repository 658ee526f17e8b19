import XCTest
import _TestSupport

/// End-to-end: the built binary, its exit codes and output.
final class CommandLineTests: XCTestCase {
    func testVersionAndHelpListSubcommands() throws {
        let v = try runNasMPI(["--version"])
        XCTAssertEqual(v.status, 0)
        XCTAssertTrue(v.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3, v.stdout)
        let h = try runNasMPI(["--help"])
        XCTAssertEqual(h.status, 0)
        XCTAssertTrue(h.stdout.contains("bench"), h.stdout)
        let b = try runNasMPI(["bench", "--help"])
        XCTAssertTrue(b.stdout.contains("kernels") && b.stdout.contains("allreduce") && b.stdout.contains("train"), b.stdout)
    }

    func testBenchKernelsPrintsTimesAndSGEMM() throws {
        let r = try runNasMPI(["bench", "kernels", "--batch", "2", "--channels", "4", "--sizes", "8", "--repeats", "1", "--threads", "1",
                               "--triad-mb", "4", "--layout-shapes", "16x16x16,2x2x2,16x320x8,72x320x16,16x384x8,20x64x32", "--flush-mb", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("sgemm M=1024 N=1024 K=1024"), r.stdout)
        XCTAssertTrue(r.stdout.contains("triad a = b + s*c, 3 x 4 MB  1 thread(s): ") && r.stdout.contains(" GB/s"), r.stdout)
        for op in ["conv 1x1", "dw 3x3", "dw 5x5", "dil dw 3x3 d2", "dil dw 5x5 d2"] {
            XCTAssertTrue(r.stdout.contains("2x4x8x8  \(op)"), "missing \(op) in\n\(r.stdout)")
        }
        XCTAssertTrue(r.stdout.contains("fwd GFLOP/s") && r.stdout.contains("bwd GFLOP/s"))
        // The layout comparison: a row per shape, with its work (2 x 2 x 16 x 16 x 256 FLOPs).
        XCTAssertTrue(r.stdout.contains("1x1 convolution forward by layout: batch 2, 1 thread"), r.stdout)
        XCTAssertTrue(r.stdout.contains("NCHW per sample  NHWC one GEMM  CNHW one GEMM  NCHW per sample, input in cache"), r.stdout)
        let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("16x16x16x16 ") || $0.hasPrefix("2x2x2x2 ") }
        XCTAssertEqual(rows.count, 2, r.stdout)
        XCTAssertEqual(rows.first?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first, "0.3", r.stdout)
        // The panel comparison: both products per shape; 16x16 planes (256 columns) and 8x8 ones at
        // the deepest K the kernel takes (320) on both sides, bit for bit (written and added onto)
        // where OpenBLAS runs its AVX-512 kernels (SkylakeX, Cooperlake), also at 72x256x320, large
        // enough for OpenBLAS's blocked path (not its small-matrix one); 2x2 planes (4 columns)
        // and K = 384 on OpenBLAS only. Its AVX2 kernels (Haswell, Zen) compute other sums.
        XCTAssertTrue(r.stdout.contains("1x1 convolution per-sample products, OpenBLAS against nas-mpi's panel kernel"), r.stdout)
        let onBoth = ["16x256x16 ", "16x64x320 ", "320x64x16 ", "72x256x320 ", "320x256x72 ", "384x64x16 "]
        let panel = r.stdout.split(separator: "\n").filter { row in (onBoth + ["2x4x2 ", "16x64x384 "]).contains { row.hasPrefix($0) } }
            .map(String.init)
        XCTAssertEqual(panel.count, 10, "\(panel)")
        let reproduces = ["SkylakeX", "Cooperlake", "SapphireRapids"].contains { r.stdout.contains("OpenBLAS \($0) kernels") }
        for row in panel where onBoth.contains(where: { row.hasPrefix($0) }) {
            XCTAssertTrue(row.hasSuffix(" yes") || (!reproduces && row.hasSuffix(" no")), row)
        }
        for row in panel where row.hasPrefix("2x4x2 ") { XCTAssertTrue(row.hasSuffix("N % 64 != 0"), row) }
        for row in panel where row.hasPrefix("16x64x384 ") { XCTAssertTrue(row.hasSuffix("K > 320"), row) }
        // The weight gradients (Cout x Cin x HxW): 72x320x256 and 20x64x1024 on both, bit for bit
        // where OpenBLAS runs its SkylakeX or Cooperlake kernels (whose K pieces the transposed
        // kernel takes: they cut K = 1024 differently); the small ones (OpenBLAS's small-matrix
        // size) and 2x2 planes (K = 4) on OpenBLAS only.
        let weight = r.stdout.split(separator: "\n").filter { $0.contains("weight gradient") }.map(String.init)
        XCTAssertEqual(weight.count, 6, "\(weight)")
        for shape in ["72x320x256 ", "20x64x1024 "] {
            XCTAssertTrue(weight.contains { $0.hasPrefix(shape) && ($0.hasSuffix(" yes") || (!reproduces && $0.hasSuffix(" no"))) }, "\(weight)")
        }
        XCTAssertTrue(weight.contains { $0.hasPrefix("16x16x256 ") && $0.hasSuffix("M N K <= 10^6") }, "\(weight)")
        XCTAssertTrue(weight.contains { $0.hasPrefix("2x2x4 ") && $0.hasSuffix("K % 16 != 0") }, "\(weight)")
    }

    func testBenchTrainTimesTheTrainingStep() throws {
        let r = try runNasMPI(["bench", "train", "--channels", "2", "--layers", "3", "--input", "3x32x32", "--batch", "2",
                               "--auxiliary", "true", "--steps", "1", "--warmup", "0", "--threads", "1", "--profile"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for field in ["nas-mpi bench train: DARTS_V2, C=2, 3 layers, input 3x32x32, batch 2 per rank, drop path 0.2, auxiliary on",
                      "auxiliary head; analytic work per step:", "step time: min=", "GFLOP/s per rank", "peak resident memory:",
                      "OpenBLAS sgemm 1024^3:", "host CPU steal during the timed steps: ", "op kind", "depthwise+1x1", "batchNormSum"] {
            XCTAssertTrue(r.stdout.contains(field), "missing '\(field)' in\n\(r.stdout)")
        }
        XCTAssertFalse(r.stdout.contains("peak resident memory: 0 MB"), r.stdout)
        let bad = try runNasMPI(["bench", "train", "--drop-path", "1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--drop-path must lie in [0, 1)"), bad.stderr)
    }

    func testBinaryStartsWithoutMPIRunAsOneRank() throws {
        let r = try runNasMPI(["bench", "allreduce", "--floats", "10", "--repeats", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("ranks: 1") && r.stdout.contains("result: correct"), r.stdout)
    }

    func testImpossibleFlagsFailWithAMessage() throws {
        for (args, message) in [
            (["bench", "kernels", "--threads", "0"], "--threads must be at least 1"),
            (["bench", "kernels", "--channels", "16,x"], "--channels expects comma-separated positive integers"),
            (["bench", "kernels", "--batch", "0"], "--batch must be at least 1"),
            (["bench", "kernels", "--layout-shapes", "36x144"], "--layout-shapes expects comma-separated CoutxCinxSize triples"),
            (["bench", "kernels", "--layout-shapes", "36x0x32"], "--layout-shapes expects comma-separated CoutxCinxSize triples"),
            (["bench", "kernels", "--layout-shapes", "36xx144x32"], "--layout-shapes expects comma-separated CoutxCinxSize triples"),
            (["bench", "kernels", "--layout-shapes", "36x144x32,"], "--layout-shapes expects comma-separated CoutxCinxSize triples"),
            (["bench", "kernels", "--layout-shapes", "36x144x4000"], "is too large for the comparison"),
            (["bench", "kernels", "--flush-mb", "0"], "--flush-mb must lie in 1...4096"),
            (["bench", "allreduce", "--floats", "0"], "--floats must be at least 1"),
            (["no-such-command"], "Unexpected argument"),
        ] {
            let r = try runNasMPI(args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.stderr.contains(message), "\(args): '\(r.stderr)' lacks '\(message)'")
        }
    }

    func testThreadCountIsBoundedAndOversubscriptionWarns() throws {
        let kernels = ["bench", "kernels", "--batch", "1", "--channels", "2", "--sizes", "4", "--repeats", "1", "--no-layouts"]
        let started = Date()
        let huge = try runNasMPI(kernels + ["--threads", "100000"], timeout: 30)
        XCTAssertNotEqual(huge.status, 0)
        XCTAssertTrue(huge.stderr.contains("--threads 100000 is more than"), huge.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "refused before starting threads")
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let over = try runNasMPI(kernels + ["--threads", "\(cores + 1)"], timeout: 30)
        XCTAssertEqual(over.status, 0, over.stderr)
        XCTAssertTrue(over.stderr.contains("warning: --threads \(cores + 1) exceeds the \(cores) cores"), over.stderr)
        let fits = try runNasMPI(kernels + ["--threads", "1"], timeout: 30)
        XCTAssertFalse(fits.stderr.contains("warning"), fits.stderr)
        XCTAssertTrue(fits.stdout.contains("1x2x4x4  conv 1x1"), fits.stdout)
        XCTAssertFalse(fits.stdout.contains("by layout"), "--no-layouts skips the layout comparison:\n\(fits.stdout)")
    }

    func testNegativeNumbersAreRefusedAsValuesNotAsMissing() throws {
        for (args, message) in [
            (["search", "--epochs", "-3"], "--epochs must be at least 1, got -3"),
            (["train", "--genotype", "DARTS_V2", "--epochs", "-3"], "--epochs must be at least 1, got -3"),
            (["search", "--learning-rate", "-0.5"], "--learning-rate"),
            (["search", "--threads", "-2"], "--threads must be at least 1, got -2"),
            (["evaluate", "--run", "x", "--recalibrate-bn", "-1"], "--recalibrate-bn must be at least 0"),
            (["bench", "kernels", "--batch", "-1"], "--batch must be at least 1"),
        ] {
            let r = try runNasMPI(args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertFalse(r.stderr.contains("Missing value"), "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): '\(r.stderr)' lacks '\(message)'")
        }
    }

    func testOutputPathsGiveActionableMessages() throws {
        let base = try temporaryDirectory(self)
        let tiny = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                    "--batch-size", "8", "--threads", "1", "--epochs", "1"]
        // An empty --out would write into the current directory.
        let empty = try runNasMPI(tiny + ["--out", ""], currentDirectory: base)
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertTrue(empty.stderr.contains("--out"), empty.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: base.path), [], "nothing written into the current directory")
        let export = try runNasMPI(["export", "--run", base.path, "--out", ""], currentDirectory: base)
        XCTAssertNotEqual(export.status, 0)
        XCTAssertTrue(export.stderr.contains("--out"), export.stderr)
        // A run directory that cannot be created (its parent is a file): the reason, not an error number.
        let file = base.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let blocked = try runNasMPI(tiny + ["--out", file.appendingPathComponent("run").path])
        XCTAssertNotEqual(blocked.status, 0)
        XCTAssertFalse(blocked.stderr.contains("NSCocoaErrorDomain"), blocked.stderr)
        XCTAssertTrue(blocked.stderr.contains("cannot create run directory") && blocked.stderr.contains("is not a directory"), blocked.stderr)
    }
}
