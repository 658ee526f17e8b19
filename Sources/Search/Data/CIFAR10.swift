import Foundation

/// CIFAR-10 in its binary distribution (`cifar-10-batches-bin`): files of 10,000 records of
/// 1 label byte + 3,072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32).
public enum CIFAR10 {
    public static let recordSize = 3073
    public static let mean: [Float] = [0.4914, 0.4822, 0.4465]
    public static let std: [Float] = [0.2470, 0.2435, 0.2616]

    /// Loads `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin` from `directory`.
    public static func load(directory: String) throws -> DataSplit {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw DataError("CIFAR-10 directory not found: \(directory) (expected cifar-10-batches-bin with data_batch_1.bin ... test_batch.bin; scripts/fetch-data downloads it)")
        }
        let train = try (1...5).map { try readBatch("\(directory)/data_batch_\($0).bin") }
        let test = try readBatch("\(directory)/test_batch.bin")
        func make(_ name: String, _ parts: [([UInt8], [Int])]) throws -> ImageDataset {
            var d = try ImageDataset(name: name, imageShape: [3, 32, 32], classes: 10,
                                pixels: parts.flatMap(\.0), labels: parts.flatMap(\.1), mean: mean, std: std)
            d.cropPadding = 4
            d.horizontalFlip = true
            return d
        }
        return DataSplit(train: try make("cifar10-train", train), test: try make("cifar10-test", [test]))
    }

    /// One batch file: pixels and labels. Checks size and label range.
    static func readBatch(_ path: String) throws -> ([UInt8], [Int]) {
        let bytes = try readDataFile(path)
        guard !bytes.isEmpty, bytes.count % recordSize == 0 else {
            throw DataError("\(path): \(bytes.count) bytes is not a whole number of \(recordSize)-byte CIFAR-10 records (truncated or not CIFAR-10)")
        }
        let n = bytes.count / recordSize
        var pixels = [UInt8](); pixels.reserveCapacity(n * 3072)
        var labels = [Int](); labels.reserveCapacity(n)
        for i in 0..<n {
            let label = Int(bytes[i * recordSize])
            guard label < 10 else { throw DataError("\(path): record \(i) has label \(label); CIFAR-10 labels are 0...9 (corrupt file?)") }
            labels.append(label)
            pixels.append(contentsOf: bytes[(i * recordSize + 1)..<((i + 1) * recordSize)])
        }
        return (pixels, labels)
    }
}
