import Foundation

/// Images as CSV rows: pixel values and one label column (first or last), no header (a first
/// row that is not numeric is skipped as a header). Pixel values in 0...255, or in 0...1 when no
/// value exceeds 1. Gzipped files are read directly.
public enum CSVDataset {
    public enum LabelColumn: String, CaseIterable, Codable, Sendable { case first, last }

    public static func load(path: String, imageShape: [Int], labelColumn: LabelColumn, name: String? = nil) throws -> ImageDataset {
        let bytes = try readDataFile(path)
        let size = imageShape.reduce(1, *)
        guard imageShape.count == 3, size > 0 else { throw DataError("CSV image shape must be CxHxW, got \(imageShape)") }
        var values: [Float] = []
        var labels: [Int] = []
        var lineNumber = 0
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            lineNumber += 1
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            let fields = text.split(separator: ",", omittingEmptySubsequences: false)
            let numbers = fields.map { Float($0.trimmingCharacters(in: .whitespaces)) }
            if lineNumber == 1, numbers.contains(where: { $0 == nil }) { continue }  // header
            guard fields.count == size + 1 else {
                throw DataError("\(path):\(lineNumber): \(fields.count) columns, expected \(size + 1) (\(imageShape.map(String.init).joined(separator: "x")) pixels + label)")
            }
            guard numbers.allSatisfy({ $0 != nil }) else { throw DataError("\(path):\(lineNumber): a value is not a number") }
            let row = numbers.map { $0! }
            let labelValue = labelColumn == .first ? row[0] : row[size]
            guard labelValue >= 0, labelValue == labelValue.rounded() else {
                throw DataError("\(path):\(lineNumber): label \(labelValue) is not a non-negative integer")
            }
            labels.append(Int(labelValue))
            values.append(contentsOf: labelColumn == .first ? row[1...] : row[..<size])
        }
        guard !labels.isEmpty else { throw DataError("\(path): no data rows") }
        let maxValue = values.max() ?? 0
        guard values.allSatisfy({ $0 >= 0 && $0 <= 255 }) else { throw DataError("\(path): pixel values must lie in 0...255") }
        let scale: Float = maxValue <= 1 ? 255 : 1
        let pixels = values.map { UInt8(min(255, ($0 * scale).rounded())) }
        let classes = max(2, (labels.max() ?? 0) + 1)
        return try ImageDataset(name: name ?? URL(fileURLWithPath: path).lastPathComponent, imageShape: imageShape,
                           classes: classes, pixels: pixels, labels: labels)
    }
}
