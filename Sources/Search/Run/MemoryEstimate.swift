import Foundation

/// A rough size of what a run will hold in memory, worked out from its configuration before
/// anything large is allocated, so that an impossible configuration (a huge `--input`, too many
/// channels for the batch) stops with a message instead of being killed by the kernel.
///
/// The figures are estimates on the low side (the supernet's activations are the figure
/// `SearchNetwork.estimatedActivationBytes` uses for `--recompute auto`); a run is refused only
/// when even they exceed the machine's memory.
public struct MemoryEstimate: Equatable, Sendable {
    /// Weights with their gradients and optimiser state.
    public var parameterBytes: Double
    /// Activations kept for one rank's batch.
    public var activationBytes: Double
    /// Images held in memory.
    public var imageBytes: Double
    /// What the activations are for, e.g. "a batch of 32 images of 3x32x32".
    public var batchDescription: String

    public var totalBytes: Double { parameterBytes + activationBytes + imageBytes }

    /// Cell channels and map size of each cell: reductions at layers/3 and 2*layers/3 halve the
    /// map and double the channels.
    static func cellShapes(channels: Int, layers: Int, inputShape: [Int]) -> [(c: Double, hw: Double)] {
        var (c, h, w) = (Double(channels), Double(inputShape[1]), Double(inputShape[2]))
        return (0..<layers).map { i in
            if SupernetConfig.isReduction(i, layers: layers) { c *= 2; h = (h / 2).rounded(.down); w = (w / 2).rounded(.down) }
            return (c, h * w)
        }
    }

    /// A search run: the supernet (8 candidate ops on 14 edges per cell), one rank's batch.
    public static func search(_ config: SearchConfig, ranks: Int = 1) -> MemoryEstimate? {
        guard let shape = config.data.expectedImageShape, shape.count == 3 else { return nil }
        let batch = config.batchSize / max(ranks, 1)
        let cells = cellShapes(channels: config.channels, layers: config.layers, inputShape: shape)
        let edges = Double(SearchCell.edgeCount(steps: 4))
        // Separable and dilated convolutions: about 6 C^2 + 100 C weights per edge; weights,
        // gradients, momentum and the second-order copies: 5 floats each.
        let weights = cells.reduce(0.0) { $0 + edges * (6 * $1.c * $1.c + 100 * $1.c) } + (cells.last?.c ?? 0) * 4 * Double(shapeClasses(config.data))
        let perCell = cells.map { Double(SearchNetwork.activationTensorsPerEdge) * edges * Double(batch) * $0.c * $0.hw * 4 }
        return MemoryEstimate(parameterBytes: 5 * 4 * weights, activationBytes: kept(perCell, config.recompute),
                              imageBytes: config.data.generatedImageBytes,
                              batchDescription: "a batch of \(batch) images of \(shape.map(String.init).joined(separator: "x"))")
    }

    /// A training run: the network of a genotype (8 ops per cell), one rank's batch.
    public static func train(_ config: TrainConfig, ranks: Int = 1) -> MemoryEstimate? {
        guard let shape = config.data.expectedImageShape, shape.count == 3 else { return nil }
        let batch = config.batchSize / max(ranks, 1)
        let cells = cellShapes(channels: config.channels, layers: config.layers, inputShape: shape)
        let weights = cells.reduce(0.0) { $0 + 8 * (2 * $1.c * $1.c + 50 * $1.c) }
        // About 20 tensors of a cell's state size per cell (measured on DARTS_V2, docs/PERFORMANCE.md).
        let perCell = cells.map { 20 * Double(batch) * $0.c * $0.hw * 4 }
        return MemoryEstimate(parameterBytes: 3 * 4 * weights, activationBytes: kept(perCell, config.recompute),
                              imageBytes: config.data.generatedImageBytes,
                              batchDescription: "a batch of \(batch) images of \(shape.map(String.init).joined(separator: "x"))")
    }

    /// The peak of the activations kept by cells that keep `perCell` bytes each: recomputed cells
    /// (`recompute`) keep their inputs only, and backward rebuilds one at a time, when the kept
    /// cells after it have been released: the peak is the larger of everything kept at the end
    /// of forward and, for each recomputed cell, the kept cells before it plus the cell itself.
    static func kept(_ perCell: [Double], _ recompute: RecomputePolicy) -> Double {
        let all = perCell.reduce(0, +)
        let recomputed = recompute.recomputedCells(cells: perCell.count, layers: perCell.count) { Int(all) }
        var peak = 0.0, before = 0.0
        for (i, bytes) in perCell.enumerated() {
            if recomputed.contains(i) { peak = max(peak, before + bytes) } else { before += bytes }
        }
        return max(peak, before)
    }

    /// One image through the supernet without recording (as `nas-mpi summary` runs it): the
    /// largest cell's activations.
    public static func summary(channels: Int, layers: Int, inputShape: [Int], classes: Int) -> MemoryEstimate {
        let cells = cellShapes(channels: channels, layers: layers, inputShape: inputShape)
        let edges = Double(SearchCell.edgeCount(steps: 4))
        let weights = cells.reduce(0.0) { $0 + edges * (6 * $1.c * $1.c + 100 * $1.c) } + (cells.last?.c ?? 0) * 4 * Double(classes)
        let largest = cells.map { 8 * $0.c * $0.hw * 4 }.max() ?? 0
        return MemoryEstimate(parameterBytes: 4 * weights, activationBytes: largest, imageBytes: 0,
                              batchDescription: "one image of \(inputShape.map(String.init).joined(separator: "x"))")
    }

    private static func shapeClasses(_ data: DataSource) -> Int {
        data.kind == .synthetic ? data.syntheticClasses : data.classes ?? 10
    }

    static let commonAdvice = "use a smaller --input, --batch-size, --channels or --layers, or more ranks on more machines"
    public static let searchAdvice = commonAdvice + " (or --recompute all)"
    public static let trainAdvice = commonAdvice + " (or --recompute all)"

    /// The machine's memory in bytes.
    public static var physicalMemory: Double { Double(ProcessInfo.processInfo.physicalMemory) }

    /// Throws when the estimate exceeds `available` bytes, with what would be needed.
    /// - Parameter advice: the flags that shrink it, for the message.
    public func check(available: Double = MemoryEstimate.physicalMemory, advice: String) throws {
        guard totalBytes > available else { return }
        var parts = ["activations for \(batchDescription): \(Self.format(activationBytes))",
                     "weights and optimiser state: \(Self.format(parameterBytes))"]
        if imageBytes > 0 { parts.append("images: \(Self.format(imageBytes))") }
        throw SearchConfigError("this run would need about \(Self.format(totalBytes)) of memory (\(parts.joined(separator: ", "))), but this machine has \(Self.format(available)); \(advice)")
    }

    /// "4.2 TB", "512 MB".
    public static func format(_ bytes: Double) -> String {
        let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"]
        var (v, u) = (bytes, 0)
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(Int(v)) bytes" : String(format: v < 10 ? "%.1f" : "%.0f", v) + " " + units[u]
    }
}
