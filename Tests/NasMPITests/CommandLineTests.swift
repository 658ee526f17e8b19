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
        XCTAssertTrue(b.stdout.contains("kernels") && b.stdout.contains("allreduce"), b.stdout)
    }

    func testBenchKernelsPrintsTimesAndSGEMM() throws {
        let r = try runNasMPI(["bench", "kernels", "--batch", "2", "--channels", "4", "--sizes", "8", "--repeats", "1", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("sgemm M=1024 N=1024 K=1024"), r.stdout)
        for op in ["conv 1x1", "dw 3x3", "dw 5x5", "dil dw 3x3 d2", "dil dw 5x5 d2"] {
            XCTAssertTrue(r.stdout.contains("2x4x8x8  \(op)"), "missing \(op) in\n\(r.stdout)")
        }
        XCTAssertTrue(r.stdout.contains("fwd GFLOP/s") && r.stdout.contains("bwd GFLOP/s"))
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
            (["bench", "allreduce", "--floats", "0"], "--floats must be at least 1"),
            (["no-such-command"], "Unexpected argument"),
        ] {
            let r = try runNasMPI(args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.stderr.contains(message), "\(args): '\(r.stderr)' lacks '\(message)'")
        }
    }
}
