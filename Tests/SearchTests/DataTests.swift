import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

final class DataTests: XCTestCase {
    private func write(_ bytes: [UInt8], _ url: URL) throws { try Data(bytes).write(to: url) }

    private func gzip(_ url: URL) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-f", "-k", url.path]
        try p.run()
        p.waitUntilExit()
    }

    func testCIFAR10BinaryFormat() throws {
        let dir = try temporaryDirectory(self)
        for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"] {
            var bytes: [UInt8] = []
            for r in 0..<3 { bytes.append(UInt8(r)); bytes.append(contentsOf: (0..<3072).map { UInt8(($0 + r) % 256) }) }
            try write(bytes, dir.appendingPathComponent(name + ".bin"))
        }
        let split = try CIFAR10.load(directory: dir.path)
        XCTAssertEqual(split.train.count, 15)
        XCTAssertEqual(split.test?.count, 3)
        XCTAssertEqual(split.train.labels.prefix(3), [0, 1, 2])
        XCTAssertEqual(split.train.imageShape, [3, 32, 32])
        XCTAssertEqual(split.train.pixels[3072 + 1], 2)  // image 1, red channel, pixel 1
        XCTAssertEqual(split.train.cropPadding, 4)

        // Truncated and corrupt files.
        try write([UInt8](repeating: 0, count: 3073 * 2 - 5), dir.appendingPathComponent("data_batch_3.bin"))
        XCTAssertThrowsError(try CIFAR10.load(directory: dir.path)) {
            XCTAssertTrue("\($0)".contains("data_batch_3.bin") && "\($0)".contains("not a whole number"), "\($0)")
        }
        var bad = [UInt8](repeating: 0, count: 3073)
        bad[0] = 42
        try write(bad, dir.appendingPathComponent("data_batch_3.bin"))
        XCTAssertThrowsError(try CIFAR10.load(directory: dir.path)) { XCTAssertTrue("\($0)".contains("label 42"), "\($0)") }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("data_batch_3.bin"))
        XCTAssertThrowsError(try CIFAR10.load(directory: dir.path)) { XCTAssertTrue("\($0)".contains("not found"), "\($0)") }
        XCTAssertThrowsError(try CIFAR10.load(directory: dir.appendingPathComponent("nope").path)) {
            XCTAssertTrue("\($0)".contains("directory not found"), "\($0)")
        }
    }

    private func idx(images n: Int, h: Int, w: Int, magic: UInt32 = 0x803) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        return be(magic) + be(UInt32(n)) + be(UInt32(h)) + be(UInt32(w)) + (0..<(n * h * w)).map { UInt8($0 % 256) }
    }

    private func idxLabels(_ labels: [UInt8], magic: UInt32 = 0x801) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        return be(magic) + be(UInt32(labels.count)) + labels
    }

    func testMNISTIDXPlainAndGzipped() throws {
        let dir = try temporaryDirectory(self)
        try write(idx(images: 4, h: 28, w: 28), dir.appendingPathComponent("train-images-idx3-ubyte"))
        try write(idxLabels([3, 1, 4, 1]), dir.appendingPathComponent("train-labels-idx1-ubyte"))
        let plain = try MNIST.load(directory: dir.path)
        XCTAssertEqual(plain.train.labels, [3, 1, 4, 1])
        XCTAssertEqual(plain.train.imageShape, [1, 28, 28])
        XCTAssertNil(plain.test)

        let gz = try temporaryDirectory(self)
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] {
            try FileManager.default.copyItem(at: dir.appendingPathComponent(name), to: gz.appendingPathComponent(name))
            try gzip(gz.appendingPathComponent(name))
            try FileManager.default.removeItem(at: gz.appendingPathComponent(name))
        }
        let zipped = try MNIST.load(directory: gz.path)
        XCTAssertEqual(zipped.train.pixels, plain.train.pixels)
        XCTAssertEqual(zipped.train.labels, plain.train.labels)
    }

    func testMNISTErrors() throws {
        let dir = try temporaryDirectory(self)
        let images = dir.appendingPathComponent("train-images-idx3-ubyte")
        let labels = dir.appendingPathComponent("train-labels-idx1-ubyte")
        try write(idxLabels([1, 2]), labels)
        try write(idx(images: 2, h: 4, w: 4, magic: 0x1234), images)
        XCTAssertThrowsError(try MNIST.load(directory: dir.path)) { XCTAssertTrue("\($0)".contains("bad magic number 0x00001234"), "\($0)") }
        try write(Array(idx(images: 2, h: 4, w: 4).dropLast(3)), images)
        XCTAssertThrowsError(try MNIST.load(directory: dir.path)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        try write(idx(images: 3, h: 4, w: 4), images)
        XCTAssertThrowsError(try MNIST.load(directory: dir.path)) { XCTAssertTrue("\($0)".contains("3 images but"), "\($0)") }
        // A gzip stream cut short.
        try write(idx(images: 2, h: 4, w: 4), images)
        try gzip(images)
        let gzURL = URL(fileURLWithPath: images.path + ".gz")
        let gz = try Data(contentsOf: gzURL)
        try FileManager.default.removeItem(at: images)
        try gz.prefix(gz.count - 10).write(to: gzURL)
        XCTAssertThrowsError(try MNIST.load(directory: dir.path)) { XCTAssertTrue("\($0)".contains("gzip"), "\($0)") }
    }

    func testCSV() throws {
        let dir = try temporaryDirectory(self)
        let f = dir.appendingPathComponent("d.csv")
        try "0,255,0,255,1\n255,0,255,0,0\n".write(to: f, atomically: true, encoding: .utf8)
        let last = try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last)
        XCTAssertEqual(last.labels, [1, 0])
        XCTAssertEqual(Array(last.pixels.prefix(4)), [0, 255, 0, 255])
        let first = try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .first)
        XCTAssertEqual(first.labels, [0, 255])
        XCTAssertEqual(first.classes, 256)
        try "p0,p1,p2,p3,label\n0,0.5,1,0,1\n".write(to: f, atomically: true, encoding: .utf8)
        let header = try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last)
        XCTAssertEqual(header.pixels, [0, 128, 255, 0])
        for (text, message) in [("1,2,3\n", "3 columns, expected 5"), ("1,2,3,4,1\n1,2,x,4,1\n", "d.csv:2: a value is not a number"), ("1,2,3,4,1.5\n", "not a non-negative integer")] {
            try text.write(to: f, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last)) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
    }

    func testCSVPixelMaxAndLabelBounds() throws {
        let dir = try temporaryDirectory(self)
        let f = dir.appendingPathComponent("d.csv")
        try "0,4,8,16,1\n16,0,2,0,0\n".write(to: f, atomically: true, encoding: .utf8)
        let inferred = try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last)
        XCTAssertEqual(Array(inferred.pixels.prefix(4)), [0, 4, 8, 16], "inferred: 0...255")
        XCTAssertTrue(inferred.notes.joined().contains("pass --pixel-max 16"), "\(inferred.notes)")
        let given = try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last, pixelMax: 16)
        XCTAssertEqual(Array(given.pixels.prefix(4)), [0, 64, 128, 255])
        XCTAssertThrowsError(try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last, pixelMax: 8)) {
            XCTAssertTrue("\($0)".contains("pixel value 16 exceeds --pixel-max 8"), "\($0)")
        }
        // --classes sets the class count (a file may lack the last classes) and bounds the labels.
        XCTAssertEqual(try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last, classes: 10).classes, 10)
        for (label, classes, message) in [("1e12", nil, "would make more than 100000 classes"), ("1e30", nil, "would make more than"),
                                          ("1000000", nil, "would make more than"), ("3", 3, "label 3 is not below --classes 3")] {
            try "0,0,0,0,\(label)\n".write(to: f, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try CSVDataset.load(path: f.path, imageShape: [1, 2, 2], labelColumn: .last, classes: classes)) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
    }

    func testTrainLimitIsTakenPerClassAfterTheShuffle() throws {
        // Sorted by label, as the MNIST sample: 100 of class 0, then 100 of class 1, ...
        let labels = (0..<400).map { $0 / 100 }
        let sorted = try ImageDataset(name: "sorted", imageShape: [1, 1, 1], classes: 4, pixels: labels.map { UInt8($0) }, labels: labels)
        let (train, validation) = sorted.searchSplit(portion: 0.5, limit: 40)
        XCTAssertEqual(train.classCounts, [5, 5, 5, 5])
        XCTAssertEqual(validation.classCounts, [5, 5, 5, 5])
        XCTAssertEqual(Set(train.labels.indices.map { train.pixels[$0] }), [0, 1, 2, 3], "pixels follow their labels")
        // Without a limit the order is the one the search has always used.
        var g = RandomGenerator(seed: 0x5EA2C4, stream: .dataOrder)
        XCTAssertEqual(sorted.searchSplit(portion: 0.5, limit: nil).train.labels, Array(g.permutation(400).prefix(200)).map { labels[$0] })
        // Training: the limit, then a balanced tenth held out; with a test set nothing is held out.
        let parts = sorted.trainTestSplit(test: nil, limit: 80)
        XCTAssertEqual(parts.train.classCounts, [18, 18, 18, 18])
        XCTAssertEqual(parts.test.classCounts, [2, 2, 2, 2])
        let withTest = sorted.trainTestSplit(test: sorted.subset([0, 1]), limit: 8)
        XCTAssertEqual(withTest.train.classCounts, [2, 2, 2, 2])
        XCTAssertFalse(withTest.heldOut)
        // Unbalanced classes: the small class gives all it has.
        let skewed = try ImageDataset(name: "s", imageShape: [1, 1, 1], classes: 2, pixels: [UInt8](repeating: 0, count: 103),
                                      labels: [Int](repeating: 0, count: 100) + [1, 1, 1])
        XCTAssertEqual(skewed.subset(skewed.shuffledOrder(salt: 1, limit: 20)).classCounts, [17, 3])
    }

    func testDataReportCountsClassesAndWarnsOfADominantOne() throws {
        let balanced = try ImageDataset(name: "b", imageShape: [1, 1, 1], classes: 3, pixels: [0, 0, 0, 0], labels: [0, 1, 2, 2])
        let report = DataReport([("train", balanced), ("test", balanced.subset([0, 1]))])
        XCTAssertEqual(report.lines, ["images per class: train 0:1 1:1 2:2; test 0:1 1:1 2:0"])
        XCTAssertEqual(report.warnings, ["warning: the test images hold no image of class 2 (of 3 classes)"])
        let oneClass = try ImageDataset(name: "o", imageShape: [1, 1, 1], classes: 2, pixels: [UInt8](repeating: 0, count: 20),
                                        labels: [Int](repeating: 0, count: 19) + [1])
        XCTAssertEqual(DataReport([("train", oneClass)]).warnings,
                       ["warning: class 0 holds 95% of the 20 labels; is the label column right (--label-column first or last)?"])
    }

    func testSyntheticIsDeterministicBalancedAndLearnable() throws {
        let a = try SyntheticDataset.make(count: 200, imageShape: [3, 16, 16], classes: 10, seed: 5)
        let b = try SyntheticDataset.make(count: 200, imageShape: [3, 16, 16], classes: 10, seed: 5)
        XCTAssertEqual(a.pixels, b.pixels)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(Dictionary(grouping: a.labels, by: { $0 }).mapValues(\.count).values.sorted(), Array(repeating: 20, count: 10))
        XCTAssertNotEqual(try SyntheticDataset.make(count: 200, imageShape: [3, 16, 16], classes: 10, seed: 6).pixels, a.pixels)
        // Not separable by mean brightness: class means differ by little compared with their spread.
        var means = [Double](repeating: 0, count: 10)
        for i in 0..<a.count { means[a.labels[i]] += a.pixels[(i * 768)..<((i + 1) * 768)].reduce(0.0) { $0 + Double($1) } / 768 / 20 }
        XCTAssertLessThan(means.max()! - means.min()!, 12)
    }

    func testBatchNormalisesAndAugments() throws {
        var d = try ImageDataset(name: "t", imageShape: [1, 2, 2], classes: 2, pixels: [0, 255, 0, 255], labels: [1], mean: [0.5], std: [0.5])
        var g = RandomGenerator(seed: 1)
        let plain = d.batch([0], augment: false, generator: &g)
        assertClose(plain.images.scalars, [-1, 1, -1, 1])
        d.horizontalFlip = true
        var sawFlip = false
        for _ in 0..<20 {
            let b = d.batch([0], augment: true, generator: &g)
            if b.images.scalars == [1, -1, 1, -1] { sawFlip = true }
            XCTAssertTrue(b.images.scalars == [1, -1, 1, -1] || b.images.scalars == [-1, 1, -1, 1])
        }
        XCTAssertTrue(sawFlip)
        d.horizontalFlip = false
        d.cropPadding = 1
        // Shifted crops bring in zero padding, which normalises to -1.
        let crops = (0..<30).map { _ in d.batch([0], augment: true, generator: &g).images.scalars }
        XCTAssertTrue(crops.contains { $0 != plain.images.scalars })
    }
}
