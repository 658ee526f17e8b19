import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: a tiny search with `--op-dropout` (the configuration it writes, a deterministic
/// rerun) and the flag's checks before any work.
final class OpDropoutCommandTests: XCTestCase {
    private let small = ["search", "--epochs", "1", "--primitives", "none,max_pool_3x3,skip_connect,sep_conv_3x3",
                         "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "32", "--batch-size", "8",
                         "--threads", "1", "--seed", "5"]

    func testSearchWithOpDropoutIsDeterministicAndCheckedFirst() throws {
        let base = try temporaryDirectory(self)
        var runs: [URL] = []
        for name in ["a", "b"] {
            let out = base.appendingPathComponent(name)
            let r = try runNasMPI(small + ["--op-dropout", "skip_connect=0.3,all=0.1", "--out", out.path, "--progress", "lines"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("op dropout all=0.1,skip_connect=0.3"), r.stdout)
            runs.append(out)
        }
        let config = try String(contentsOf: runs[0].appendingPathComponent("config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("\"opDropout\" : \"all=0.1,skip_connect=0.3\""), config)
        let (fa, fb) = (try CheckpointFile.read(from: runs[0].appendingPathComponent("checkpoint.bin")),
                        try CheckpointFile.read(from: runs[1].appendingPathComponent("checkpoint.bin")))
        for ((name, x), (_, y)) in zip(fa.tensors, fb.tensors) { XCTAssertEqual(x, y, name) }
        // Without dropout the weights differ.
        let plain = base.appendingPathComponent("plain")
        XCTAssertEqual(try runNasMPI(small + ["--out", plain.path]).status, 0)
        let fp = try CheckpointFile.read(from: plain.appendingPathComponent("checkpoint.bin"))
        XCTAssertNotEqual(try fp.tensor("classifier.weight", shape: [10, 64]), try fa.tensor("classifier.weight", shape: [10, 64]))
        // Bad values stop before a run directory is made.
        for (value, message) in [("foo=0.1", "unknown operation 'foo'"), ("skip_connect=1.5", "[0, 1)"), ("skip_connect", "cannot read"),
                                 ("dil_conv_3x3=0.1", "not in the search space")] {
            let out = base.appendingPathComponent("bad")
            let r = try runNasMPI(small + ["--op-dropout", value, "--out", out.path])
            XCTAssertTrue(r.status != 0 && r.stderr.contains("--op-dropout") && r.stderr.contains(message), "\(value): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), value)
        }
        let pc = try runNasMPI(small + ["--method", "pc-darts", "--partial-channels", "2", "--op-dropout", "all=0.1"])
        XCTAssertTrue(pc.status != 0 && pc.stderr.contains("pc-darts"), pc.stderr)
    }
}
