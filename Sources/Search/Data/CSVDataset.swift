import Foundation

/// Images as CSV rows: pixel values and one label column (first or last), no header (a first
/// row that is not numeric is skipped as a header). Pixel values lie in 0...pixelMax and are
/// rescaled to 0...255; without a given maximum it is 1 when no value exceeds 1, else 255.
/// Gzipped files are read directly.
public enum CSVDataset {
    public enum LabelColumn: String, CaseIterable, Codable, Sendable { case first, last }

    /// The most classes inferred from the labels when the number is not given.
    public static let maxInferredClasses = 100_000

    /// - Parameters:
    ///   - classes: the number of classes; labels must lie below it (nil: the largest label + 1,
    ///     at most `maxInferredClasses`).
    ///   - pixelMax: the value of a white pixel (nil: inferred, 1 or 255).
    public static func load(path: String, imageShape: [Int], labelColumn: LabelColumn, classes: Int? = nil,
                            pixelMax: Float? = nil, name: String? = nil) throws -> ImageDataset {
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
            let labelText = fields[labelColumn == .first ? 0 : size].trimmingCharacters(in: .whitespaces)
            guard labelValue >= 0, labelValue == labelValue.rounded() else {
                throw DataError("\(path):\(lineNumber): label \(labelValue) is not a non-negative integer")
            }
            if let classes, labelValue >= Float(classes) {
                throw DataError("\(path):\(lineNumber): label \(labelText) is not below --classes \(classes)")
            }
            guard labelValue < Float(maxInferredClasses) else {
                throw DataError("\(path):\(lineNumber): label \(labelText) would make more than \(maxInferredClasses) classes; is the label column (\(labelColumn.rawValue)) right?")
            }
            labels.append(Int(labelValue))
            values.append(contentsOf: labelColumn == .first ? row[1...] : row[..<size])
        }
        guard !labels.isEmpty else { throw DataError("\(path): no data rows") }
        let maxValue = values.max() ?? 0
        guard values.allSatisfy({ $0 >= 0 && $0.isFinite }) else { throw DataError("\(path): pixel values must be finite and not negative") }
        let white = pixelMax ?? (maxValue <= 1 ? 1 : 255)
        guard maxValue <= white else {
            throw DataError("\(path): pixel value \(format(maxValue)) exceeds \(pixelMax == nil ? "255, the largest inferred maximum; pass --pixel-max" : "--pixel-max \(format(white))")")
        }
        let scale = 255 / white
        let pixels = values.map { UInt8(min(255, ($0 * scale).rounded())) }
        let classCount = classes ?? max(2, (labels.max() ?? 0) + 1)
        var notes = ["CSV pixels: 0...\(format(white)) read as 0...255 (\(pixelMax == nil ? "inferred from the largest value, \(format(maxValue)); set --pixel-max to override" : "--pixel-max"))"]
        if pixelMax == nil, white == 255, maxValue < 128 {
            notes.append("note: the largest pixel value is only \(format(maxValue)) of 255; if the data ranges over 0...\(format(maxValue)), pass --pixel-max \(format(maxValue))")
        }
        var dataset = try ImageDataset(name: name ?? URL(fileURLWithPath: path).lastPathComponent, imageShape: imageShape,
                                       classes: classCount, pixels: pixels, labels: labels)
        dataset.notes = notes
        return dataset
    }

    /// "16" for whole numbers (up to 1e15), else Swift's form ("0.5", "1e+30").
    private static func format(_ v: Float) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : "\(v)" }
}
