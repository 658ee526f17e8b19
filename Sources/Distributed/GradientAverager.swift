import Foundation
import Kernels

/// Averages gradients over the ranks of a data-parallel job with one allreduce per call: the
/// gradients are packed into a single fused buffer (Horovod's tensor fusion, PyTorch DDP's buckets),
/// summed, scaled by 1/size and unpacked. The buffer is kept between steps. The first call for a
/// given list checks that every rank packs the same number of floats, so a rank that built a
/// different network fails with a message instead of mixing unrelated gradients.
public final class GradientAverager {
    public let comm: Communicator
    private var buffer: [Float] = []
    private var checkedLengths: Set<Int> = []
    /// Seconds spent in allreduce calls (gradients and synchronised BatchNorm statistics).
    public private(set) var communicationSeconds = 0.0
    /// Allreduce calls made.
    public private(set) var calls = 0

    public init(_ comm: Communicator) { self.comm = comm }

    /// Replaces each variable's gradient by its mean over ranks (a missing gradient counts as 0).
    public func average(_ variables: [Variable]) throws {
        guard comm.size > 1 else { return }
        var total = 0
        for v in variables { total += v.value.count }
        if !checkedLengths.contains(total) {
            try comm.requireSameOnAllRanks(total, what: "fused gradient buffer length")
            checkedLengths.insert(total)
        }
        if buffer.count < total { buffer = [Float](repeating: 0, count: total) }
        try buffer.withUnsafeMutableBufferPointer { buf in
            var o = 0
            for v in variables {
                let n = v.value.count
                if let g = v.grad {
                    g.scalars.withUnsafeBufferPointer { (buf.baseAddress! + o).update(from: $0.baseAddress!, count: n) }
                } else {
                    (buf.baseAddress! + o).update(repeating: 0, count: n)
                }
                o += n
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            try comm.allreduceSum(UnsafeMutableBufferPointer(rebasing: buf[0..<total]))
            communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            calls += 1
            let inv = 1 / Float(comm.size)
            o = 0
            for v in variables {
                let n = v.value.count
                if v.grad == nil { v.grad = Tensor(shape: v.shape) }
                v.grad!.scalars.withUnsafeMutableBufferPointer { g in
                    for j in 0..<n { g[j] = buf[o + j] * inv }
                }
                o += n
            }
        }
    }

    /// A BatchNorm statistics reducer (synchronised BatchNorm) over this communicator, timed.
    public var statisticsReducer: StatisticsReducer {
        { [unowned self] buf in
            let t0 = DispatchTime.now().uptimeNanoseconds
            try self.comm.allreduceSum(buf)
            self.communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            self.calls += 1
        }
    }

    /// Resets the communication timer.
    public func resetTimer() { communicationSeconds = 0; calls = 0 }
}
