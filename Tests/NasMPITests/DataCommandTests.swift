import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// End to end: how `search`, `train` and `evaluate` read data files — --train-limit, --pixel-max,
/// --test-data, paths in config.json — and how they refuse data and sizes they cannot handle.
final class DataCommandTests: XCTestCase {
    /// A CSV of 1x8x8 images sorted by label (as the MNIST sample is): `perClass` rows of class 0,
    /// then of class 1, ...; the class is in the brightness of the left half; values 0...`white`.
    private func writeSortedCSV(_ url: URL, classes: Int = 4, perClass: Int = 40, white: Int = 255) throws {
        var g = RandomGenerator(seed: 7)
        var lines: [String] = []
        for k in 0..<classes {
            for _ in 0..<perClass {
                let pixels = (0..<64).map { j -> Int in
                    let level = (j % 8) < 4 ? Float(k + 1) / Float(classes + 1) : 0.5
                    return max(0, min(white, Int((level * Float(white) + Float(white) / 10 * g.normal()).rounded())))
                }
                lines.append((pixels + [k]).map(String.init).joined(separator: ","))
            }
        }
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
    }

    private let csvSearch = ["search", "--dataset", "csv", "--input", "1x8x8", "--channels", "2", "--layers", "3",
                             "--batch-size", "8", "--epochs", "1", "--threads", "1", "--progress", "lines"]
    private let csvTrain = ["train", "--genotype", "DARTS_V2", "--dataset", "csv", "--input", "1x8x8", "--channels", "4", "--layers", "3",
                            "--batch-size", "16", "--epochs", "1", "--threads", "1", "--progress", "lines"]

    // MARK: - Item 1: --train-limit on a file sorted by label

    func testTrainLimitKeepsEveryClassOfASortedFile() throws {
        let dir = try temporaryDirectory(self)
        let csv = dir.appendingPathComponent("sorted.csv")
        try writeSortedCSV(csv)
        let s = try runNasMPI(csvSearch + ["--data", csv.path, "--train-limit", "40", "--out", dir.appendingPathComponent("s").path])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("images per class: train 0:5 1:5 2:5 3:5; validation 0:5 1:5 2:5 3:5"), s.stdout)
        let log = try String(contentsOf: dir.appendingPathComponent("s/log.txt"), encoding: .utf8)
        XCTAssertTrue(log.contains("images per class: train 0:5 1:5 2:5 3:5"), log)

        let t = try runNasMPI(csvTrain + ["--data", csv.path, "--train-limit", "80", "--out", dir.appendingPathComponent("t").path])
        XCTAssertEqual(t.status, 0, t.stderr)
        // 80 images, 20 per class; the held-out tenth takes 2 of each.
        XCTAssertTrue(t.stdout.contains("images per class: train 0:18 1:18 2:18 3:18; test 0:2 1:2 2:2 3:2"), t.stdout)
    }

    // MARK: - Item 5: refusals instead of crashes

    func testAbsurdLabelsAndSizesStopWithAMessage() throws {
        let dir = try temporaryDirectory(self)
        let csv = dir.appendingPathComponent("labels.csv")
        let row = Array(repeating: "0", count: 64).joined(separator: ",")
        for (label, extra, message) in [
            ("1e12", [String](), "label 1e12 would make more than 100000 classes"),
            ("1000000", [], "label 1000000 would make more than 100000 classes"),
            ("12", ["--classes", "10"], "label 12 is not below --classes 10"),
        ] {
            // Enough rows for a batch, so only the label can stop the run.
            let rows = (0..<20).map { "\(row),\($0 % 2)" } + ["\(row),\(label)"]
            try (rows.joined(separator: "\n") + "\n").write(to: csv, atomically: true, encoding: .utf8)
            let r = try runNasMPI(csvSearch + ["--data", csv.path, "--out", dir.appendingPathComponent("r-\(label)").path] + extra, timeout: 60)
            XCTAssertEqual(r.status, 1, "label \(label): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "label \(label): '\(r.stderr)' lacks '\(message)'")
        }
        for (args, message) in [
            (["search", "--input", "3x100000x100000", "--out", dir.appendingPathComponent("big").path], "this run would need about"),
            (["train", "--genotype", "DARTS_V2", "--input", "3x100000x100000", "--out", dir.appendingPathComponent("big2").path], "this run would need about"),
            (["summary", "--input", "3x100000x100000"], "would need about"),
            (["summary", "--layers", "100000"], "--layers must be at most 100"),
            (["summary", "--channels", "100000"], "--channels must be at most 1024"),
            (["search", "--classes", "1000000"], "--classes must be at most 100000"),
            (["summary", "--input", "3x1000000000x1000000000"], "each size must be at most 100000"),
        ] {
            let r = try runNasMPI(args, timeout: 60)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.stderr.contains(message), "\(args): '\(r.stderr)' lacks '\(message)'")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("big/config.json").path), "nothing written")
        }
    }

    // MARK: - Item 10: paths, pixel range, a dominant class

    func testDataPathIsStoredAbsoluteSoEvaluateWorksFromAnotherDirectory() throws {
        let dir = try temporaryDirectory(self)
        try writeSortedCSV(dir.appendingPathComponent("d.csv"), perClass: 20)
        let run = dir.appendingPathComponent("run")
        let t = try runNasMPI(csvTrain + ["--data", "d.csv", "--out", run.path], currentDirectory: dir)
        XCTAssertEqual(t.status, 0, t.stderr)
        let config = try JSONDecoder().decode(TrainConfig.self, from: Data(contentsOf: run.appendingPathComponent("config.json")))
        XCTAssertEqual(config.data.path, dir.appendingPathComponent("d.csv").standardizedFileURL.path)
        let elsewhere = try temporaryDirectory(self)
        let e = try runNasMPI(["evaluate", "--run", run.path, "--threads", "1"], currentDirectory: elsewhere)
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("test images: 8 (a held-out tenth"), e.stdout)
    }

    func testPixelMaxIsInferredLoggedAndCanBeGiven() throws {
        let dir = try temporaryDirectory(self)
        let csv = dir.appendingPathComponent("small-ints.csv")
        try writeSortedCSV(csv, perClass: 10, white: 16)
        let inferred = try runNasMPI(csvSearch + ["--data", csv.path, "--out", dir.appendingPathComponent("a").path])
        XCTAssertEqual(inferred.status, 0, inferred.stderr)
        XCTAssertTrue(inferred.stdout.contains("CSV pixels: 0...255 read as 0...255 (inferred from the largest value, 16;"), inferred.stdout)
        XCTAssertTrue(inferred.stdout.contains("pass --pixel-max 16"), inferred.stdout)
        let given = try runNasMPI(csvSearch + ["--data", csv.path, "--pixel-max", "16", "--out", dir.appendingPathComponent("b").path])
        XCTAssertEqual(given.status, 0, given.stderr)
        XCTAssertTrue(given.stdout.contains("CSV pixels: 0...16 read as 0...255 (--pixel-max)"), given.stdout)
        let log = try String(contentsOf: dir.appendingPathComponent("b/log.txt"), encoding: .utf8)
        XCTAssertTrue(log.contains("CSV pixels: 0...16"), log)
        let tooSmall = try runNasMPI(csvSearch + ["--data", csv.path, "--pixel-max", "8", "--out", dir.appendingPathComponent("c").path])
        XCTAssertEqual(tooSmall.status, 1)
        XCTAssertTrue(tooSmall.stderr.contains("exceeds --pixel-max 8"), tooSmall.stderr)
    }

    func testWrongLabelColumnWarnsOfADominantClass() throws {
        let dir = try temporaryDirectory(self)
        let csv = dir.appendingPathComponent("d.csv")
        // Label last, and the first pixel always 0: read with the label first, every label is 0.
        var lines: [String] = []
        for i in 0..<40 { lines.append((["0"] + (1..<64).map { String(($0 * 7 + i) % 256) } + [String(i % 4)]).joined(separator: ",")) }
        try (lines.joined(separator: "\n") + "\n").write(to: csv, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("r")
        let r = try runNasMPI(csvSearch + ["--data", csv.path, "--label-column", "first", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: class 0 holds 100% of the 40 labels"), r.stderr)
        let log = try String(contentsOf: out.appendingPathComponent("log.txt"), encoding: .utf8)
        XCTAssertTrue(log.contains("warning: class 0 holds 100%"), log)
    }

    // MARK: - Item 11: a separate test file

    func testTrainAndEvaluateTakeASeparateTestFile() throws {
        let dir = try temporaryDirectory(self)
        let train = dir.appendingPathComponent("train.csv"), test = dir.appendingPathComponent("test.csv")
        let other = dir.appendingPathComponent("other.csv")
        try writeSortedCSV(train, perClass: 20)
        try writeSortedCSV(test, perClass: 6)
        try writeSortedCSV(other, perClass: 3)
        let run = dir.appendingPathComponent("run")
        let t = try runNasMPI(csvTrain + ["--data", train.path, "--test-data", test.path, "--out", run.path])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stdout.contains("(80 train / 24 test images)"), t.stdout)
        let e = try runNasMPI(["evaluate", "--run", run.path, "--threads", "1"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("test images: 24 (\(test.standardizedFileURL.path))"), e.stdout)
        let o = try runNasMPI(["evaluate", "--run", run.path, "--test-data", other.path, "--threads", "1"])
        XCTAssertEqual(o.status, 0, o.stderr)
        XCTAssertTrue(o.stdout.contains("test images: 12"), o.stdout)
        let synthetic = try runNasMPI(["train", "--genotype", "DARTS_V2", "--test-data", test.path, "--out", dir.appendingPathComponent("x").path])
        XCTAssertTrue(synthetic.stderr.contains("--test-data applies to --dataset csv"), synthetic.stderr)
        let help = try runNasMPI(["train", "--help"])
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(words.contains("a search on the same file has seen those images"), help.stdout)
    }
}
