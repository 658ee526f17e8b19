import Foundation

/// MNIST in IDX format (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-...`), each
/// file optionally gzipped (`.gz`).
public enum MNIST {
    public static let mean: [Float] = [0.1307]
    public static let std: [Float] = [0.3081]

    /// Loads the training and (if present) test files from `directory`.
    public static func load(directory: String) throws -> DataSplit {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw DataError("MNIST directory not found: \(directory) (expected train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz])")
        }
        func find(_ stem: String) -> String? {
            for name in [stem, stem + ".gz"] where FileManager.default.fileExists(atPath: "\(directory)/\(name)") {
                return "\(directory)/\(name)"
            }
            return nil
        }
        guard let trainImages = find("train-images-idx3-ubyte"), let trainLabels = find("train-labels-idx1-ubyte") else {
            throw DataError("\(directory): missing train-images-idx3-ubyte[.gz] or train-labels-idx1-ubyte[.gz]")
        }
        let train = try load(images: trainImages, labels: trainLabels, name: "mnist-train")
        var test: ImageDataset?
        if let ti = find("t10k-images-idx3-ubyte"), let tl = find("t10k-labels-idx1-ubyte") {
            test = try load(images: ti, labels: tl, name: "mnist-test")
        }
        return DataSplit(train: train, test: test)
    }

    /// One images file and its labels file.
    public static func load(images: String, labels: String, name: String) throws -> ImageDataset {
        let img = try readDataFile(images)
        let lab = try readDataFile(labels)
        func be32(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        guard img.count >= 16, be32(img, 0) == 0x0803 else {
            throw DataError("\(images): bad magic number \(img.count >= 4 ? String(format: "0x%08x", be32(img, 0)) : "(file too short)"); an IDX image file starts with 0x00000803")
        }
        guard lab.count >= 8, be32(lab, 0) == 0x0801 else {
            throw DataError("\(labels): bad magic number \(lab.count >= 4 ? String(format: "0x%08x", be32(lab, 0)) : "(file too short)"); an IDX label file starts with 0x00000801")
        }
        let (n, h, w) = (be32(img, 4), be32(img, 8), be32(img, 12))
        guard img.count == 16 + n * h * w else {
            throw DataError("\(images): header says \(n) images of \(h)x\(w) (\(16 + n * h * w) bytes) but the file has \(img.count) bytes (truncated?)")
        }
        let nl = be32(lab, 4)
        guard lab.count == 8 + nl else { throw DataError("\(labels): header says \(nl) labels but the file has \(lab.count - 8) (truncated?)") }
        guard nl == n else { throw DataError("\(images) has \(n) images but \(labels) has \(nl) labels") }
        return try ImageDataset(name: name, imageShape: [1, h, w], classes: 10, pixels: Array(img[16...]),
                           labels: lab[8...].map { Int($0) }, mean: mean, std: std)
    }
}
