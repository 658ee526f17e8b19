/// Search cost and CIFAR-10 test accuracy as the papers report them: not measured here, shown
/// beside the measurements for scale only (other data, hardware, search spaces and protocols).
///
/// Figures as tabulated in Liu et al., "DARTS: Differentiable Architecture Search" (ICLR 2019),
/// Table 1, and Xu et al., "PC-DARTS" (ICLR 2020), Table 1.
public struct PublishedResult: Sendable, Equatable {
    public let method: String
    public let paper: String
    public let gpuDays: Double
    /// CIFAR-10 test accuracy, percent.
    public let testAccuracyPercent: Double
    public let searchKind: String

    public static let all: [PublishedResult] = [
        .init(method: "NASNet-A (RL)", paper: "Zoph et al. 2018", gpuDays: 1800, testAccuracyPercent: 96.35, searchKind: "reinforcement learning"),
        .init(method: "AmoebaNet-A (evolution)", paper: "Real et al. 2019", gpuDays: 3150, testAccuracyPercent: 96.15, searchKind: "evolution"),
        .init(method: "ENAS", paper: "Pham et al. 2018", gpuDays: 0.45, testAccuracyPercent: 96.13, searchKind: "RL, weight sharing"),
        .init(method: "DARTS (second order)", paper: "Liu et al. 2019", gpuDays: 1.5, testAccuracyPercent: 97.24, searchKind: "gradient, weight sharing"),
        .init(method: "PC-DARTS", paper: "Xu et al. 2020", gpuDays: 0.1, testAccuracyPercent: 97.43, searchKind: "gradient, weight sharing"),
    ]
}
