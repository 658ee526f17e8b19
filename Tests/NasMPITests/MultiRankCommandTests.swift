import Foundation
import Search
import XCTest
import _TestSupport

/// `nas-mpi search` under mpirun: many ranks on this machine, and a rank that fails.
final class MultiRankCommandTests: XCTestCase {
    private let tiny = ["search", "--channels", "2", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                        "--batch-size", "16", "--epochs", "1", "--seed", "5"]

    func testEightRanksOnTwoCoresWriteOneGenotype() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("np8")
        let r = try runNasMPIUnderMPI(ranks: 8, tiny + ["--out", out.path, "--check-consistency", "1"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("8 rank(s) x 1 thread(s)"), r.stdout)
        XCTAssertEqual(r.stdout.components(separatedBy: "genotype: Genotype(").count - 1, 1, "only rank 0 prints the genotype")
        XCTAssertNoThrow(try Genotype.load(out.appendingPathComponent("genotype.json").path))
        let cost = try JSONDecoder().decode([String: JSONValue].self, from: Data(contentsOf: out.appendingPathComponent("cost.json")))
        XCTAssertEqual(cost["ranks"]?.int, 8)
    }

    func testTwoRanksMatchOneRankWithTheSameGlobalBatchUnderSyncBN() throws {
        // With --sync-bn, 2 ranks x 8 images compute what 1 rank x 16 does; the alphas agree
        // to floating-point reordering of the sums.
        let base = try temporaryDirectory(self)
        XCTAssertEqual(try runNasMPI(tiny + ["--sync-bn", "--threads", "1", "--out", base.appendingPathComponent("one").path]).status, 0)
        let two = try runNasMPIUnderMPI(ranks: 2, tiny + ["--sync-bn", "--out", base.appendingPathComponent("two").path], timeout: 300)
        XCTAssertEqual(two.status, 0, two.stderr)
        let a = try CheckpointFile.read(from: base.appendingPathComponent("one/checkpoint.bin")).tensor("alphas_normal", shape: [14, 8])
        let b = try CheckpointFile.read(from: base.appendingPathComponent("two/checkpoint.bin")).tensor("alphas_normal", shape: [14, 8])
        let diff = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-5, "alphas of 1 and 2 ranks differ by \(diff)")
    }

    func testARankThatFailsEndsTheJobNamingTheRank() throws {
        // Rank 1 is pointed at a data directory that does not exist (a file missing on one node).
        let base = try temporaryDirectory(self)
        let present = base.appendingPathComponent("mnist")
        try FileManager.default.createDirectory(at: present, withIntermediateDirectories: true)
        let script = """
            if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then d=\(base.path)/missing; else d=\(present.path); fi
            exec "\(try nasMPIBinary().path)" search --dataset mnist --data "$d" --out \(base.path)/run --threads 1
            """
        let start = Date()
        let r = try runProgram(packageRoot().appendingPathComponent("scripts/mpirun-local"), ["-np", "2", "sh", "-c", script], timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue((r.stderr + r.stdout).contains("rank 1: error: MNIST directory not found"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 60, "the job ends within seconds, never hangs")
    }

    func testSignallingMpirunStopsTheJobWithACheckpointAnd143() throws {
        let out = try temporaryDirectory(self).appendingPathComponent("run")
        let process = Process()
        process.executableURL = packageRoot().appendingPathComponent("scripts/mpirun-local")
        process.arguments = ["-np", "2", try nasMPIBinary().path] + tiny.map { $0 == "64" ? "4096" : $0 }
            + ["--batch-size", "8", "--threads", "1", "--out", out.path, "--progress", "lines", "--log-every", "1"]
        let stdout = out.deletingLastPathComponent().appendingPathComponent("stdout")
        FileManager.default.createFile(atPath: stdout.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if let t = try? String(contentsOf: out.appendingPathComponent("log.txt"), encoding: .utf8), t.contains("step 3/") { break }
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 143, "the job exits as a signalled process would, not with mpirun's 1")
        let text = try String(contentsOf: stdout, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: "checkpoint written; continue with --resume").count - 1, 1, text)
        XCTAssertNoThrow(try CheckpointFile.read(from: out.appendingPathComponent("checkpoint.bin")))
        // Rank 0 writes run.json after the checkpoint; the ranks leave together after it.
        XCTAssertEqual(try RunManifest.read(from: RunDirectory(out.path)).status, .interrupted)
    }
}
