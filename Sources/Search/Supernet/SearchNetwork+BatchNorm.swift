import Kernels

/// How a supernet's BatchNorm layers normalise (`--bn-mode`).
public enum BatchNormMode: String, Codable, CaseIterable, Sendable {
    /// Batch statistics in training, running averages (momentum 0.1) in evaluation: the DARTS
    /// reference's `nn.BatchNorm2d(C, affine=False)` on every op.
    case running
    /// No running statistics: batch statistics in evaluation too (PyTorch's
    /// `track_running_stats=False`, as NAS-Bench-201's weight-sharing supernets). The supernet's
    /// evaluation then does not depend on the mixed statistics its weight steps accumulated, but
    /// on the evaluation batch (its size and composition).
    case batch
}

extension SearchNetwork {
    /// The mode of every BatchNorm layer of the supernet (stem, preprocessing, ops). Setting
    /// `.batch` leaves the running buffers at their values, unused and unchanged.
    public var batchNormMode: BatchNormMode {
        get { state.statistics.allSatisfy { $0.statistics.tracksRunningStatistics } ? .running : .batch }
        set { for (_, s) in state.statistics { s.tracksRunningStatistics = newValue == .running } }
    }
}
