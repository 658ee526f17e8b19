import Foundation
import Search
import XCTest
import _TestSupport

/// End to end: a search epoch gives bit-identical results with 1, 2 and 3 intra-op threads, so a
/// run may be resumed or repeated with another `--threads`.
final class ThreadIndependenceTests: XCTestCase {
    /// A small search; NASMPI_MIN_PARALLEL_WORK=0 makes every op split its work over the threads
    /// even at this size (by default small ops run on one thread).
    private let search = ["search", "--channels", "4", "--layers", "3", "--input", "1x8x8", "--synthetic-count", "64",
                          "--batch-size", "16", "--epochs", "1", "--seed", "5"]

    func testSearchEpochIsIdenticalForOneTwoAndThreeThreads() throws {
        let base = try temporaryDirectory(self)
        var runs: [URL] = []
        for threads in [1, 2, 3] {
            let out = base.appendingPathComponent("threads-\(threads)")
            let r = try runNasMPI(search + ["--out", out.path, "--threads", "\(threads)"],
                                  environment: ["NASMPI_MIN_PARALLEL_WORK": "0"])
            XCTAssertEqual(r.status, 0, r.stderr)
            runs.append(out)
        }
        let reference = RunDirectory(runs[0].path)
        for (threads, run) in zip([2, 3], runs.dropFirst()) {
            let dir = RunDirectory(run.path)
            for (a, b) in [(reference.alphas, dir.alphas), (reference.genotypeJSON, dir.genotypeJSON)] {
                XCTAssertEqual(try Data(contentsOf: a), try Data(contentsOf: b), "\(a.lastPathComponent) differs with \(threads) threads")
            }
            XCTAssertEqual(try timeless(lines(reference.metrics)), try timeless(lines(dir.metrics)),
                           "metrics differ with \(threads) threads")

            // Checkpoints: every tensor bit for bit, and the metadata apart from wall-clock times.
            let ca = try CheckpointFile.read(from: reference.checkpoint), cb = try CheckpointFile.read(from: dir.checkpoint)
            XCTAssertEqual(ca.tensors.map(\.name), cb.tensors.map(\.name))
            let differing = zip(ca.tensors, cb.tensors).filter { a, b in
                a.tensor.shape != b.tensor.shape || a.tensor.scalars.map(\.bitPattern) != b.tensor.scalars.map(\.bitPattern)
            }.map(\.0.name)
            XCTAssertEqual(differing, [], "\(differing.count) of \(ca.tensors.count) checkpoint tensors differ with \(threads) threads")
            let keys = Set(ca.metadata.keys).union(cb.metadata.keys).sorted().filter {
                !$0.contains("second") && ca.metadata[$0].map(timeless) != cb.metadata[$0].map(timeless)
            }
            XCTAssertEqual(keys, [], "checkpoint metadata differs with \(threads) threads")
        }
    }

    /// The JSON records of a .jsonl file.
    private func lines(_ url: URL) throws -> [JSONValue] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8))
        }
    }

    private func timeless(_ values: [JSONValue]) -> [JSONValue] { values.map(timeless) }

    /// `value` without its wall-clock fields (keys naming seconds), at any depth.
    private func timeless(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let o):
            return .object(o.filter { !$0.key.contains("second") }.mapValues(timeless))
        case .array(let a):
            return .array(a.map(timeless))
        default:
            return value
        }
    }
}
