/// What a run logs about its data when it starts: how the files were read, the images per class
/// of each part, and warnings about data that is probably read wrongly.
public struct DataReport: Equatable, Sendable {
    /// Lines for the log.
    public var lines: [String]
    /// Lines for the log and standard error.
    public var warnings: [String]

    /// A share of the labels above which one class is reported as dominating.
    public static let dominantShare = 0.9

    /// - Parameter parts: the run's parts by name ("train", "validation", "test"); the notes of
    ///   the first part (how its files were read) are reported once.
    public init(_ parts: [(name: String, data: ImageDataset)]) {
        lines = parts.first?.data.notes ?? []
        warnings = []
        let described = parts.map { "\($0.name) \(Self.describe($0.data.classCounts))" }
        lines.append("images per class: " + described.joined(separator: "; "))
        guard let classes = parts.first?.data.classes else { return }
        var total = [Int](repeating: 0, count: classes)
        for part in parts { for (k, n) in part.data.classCounts.enumerated() where k < classes { total[k] += n } }
        let all = total.reduce(0, +)
        if let top = total.indices.max(by: { total[$0] < total[$1] }), all > 0, Double(total[top]) > Self.dominantShare * Double(all) {
            let share = Int((100 * Double(total[top]) / Double(all)).rounded())
            warnings.append("warning: class \(top) holds \(share)% of the \(all) labels; is the label column right (--label-column first or last)?")
        }
        for part in parts {
            let empty = part.data.classCounts.indices.filter { part.data.classCounts[$0] == 0 }
            if !empty.isEmpty, empty.count < classes {
                warnings.append("warning: the \(part.name) images hold no image of class \(Self.list(empty)) (of \(classes) classes)")
            }
        }
    }

    /// "0:50 1:48 ..." for up to 20 classes, else "n per class from min to max over K classes".
    static func describe(_ counts: [Int]) -> String {
        if counts.count <= 20 { return counts.enumerated().map { "\($0.offset):\($0.element)" }.joined(separator: " ") }
        return "\(counts.min() ?? 0) to \(counts.max() ?? 0) over \(counts.count) classes"
    }

    static func list(_ classes: [Int]) -> String {
        classes.count <= 10 ? classes.map(String.init).joined(separator: ", ") : "\(classes.prefix(10).map(String.init).joined(separator: ", ")), ... (\(classes.count))"
    }
}
