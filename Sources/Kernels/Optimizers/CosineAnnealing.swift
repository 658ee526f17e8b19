import Foundation

/// Cosine annealing without restarts, as PyTorch's `CosineAnnealingLR`:
///
///     lr(t) = minimum + (base - minimum) * (1 + cos(pi * t / period)) / 2
///
/// DARTS steps it once per epoch with period = epochs and minimum 0.001 (search) or 0 (evaluation).
public struct CosineAnnealing: Equatable, Sendable {
    public let base: Float
    public let minimum: Float
    public let period: Int

    public init(base: Float, minimum: Float, period: Int) {
        precondition(period > 0, "CosineAnnealing: period must be positive, got \(period)")
        self.base = base
        self.minimum = minimum
        self.period = period
    }

    /// The learning rate at epoch (or step) t, 0-based.
    public func learningRate(at t: Int) -> Float {
        let cosv = cos(Double.pi * Double(t) / Double(period))
        return Float(Double(minimum) + Double(base - minimum) * (1 + cosv) / 2)
    }
}
