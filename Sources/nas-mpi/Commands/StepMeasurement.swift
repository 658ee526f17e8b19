import Distributed
import Foundation
import Kernels
import Search

/// Timed training steps as `bench step` and `bench train` measure and print them: min/median/max
/// over the timed steps (the slowest rank's), communication, peak memory (the largest rank's),
/// OpenBLAS sgemm measured in the same run, and the time per op kind when profiled.
struct StepMeasurement {
    var times: TimingSummary
    var steps: Int
    var warmup: Int
    /// Seconds per step in the gradient allreduce (the slowest rank's).
    var communicationSeconds: Double
    var peakResidentBytes: Double
    /// OpenBLAS sgemm 1024^3 GFLOP/s on one thread and on `threads`.
    var sgemm: (one: Double, all: Double)
    var threads: Int
    /// Seconds per op kind over the timed steps (rank 0's), when profiled.
    var profile: [(kind: String, entry: OpProfile.Entry)]?
    /// The share of the machine's CPU time the hypervisor gave to other guests during the timed
    /// steps (the largest over the ranks' machines); nil where /proc/stat is unavailable.
    var steal: Double?

    /// Runs `warmup` untimed steps, then `steps` timed ones; every rank must call it.
    /// - Returns: the measurement on rank 0, nil on the other ranks.
    static func run(_ comm: Communicator, averager: GradientAverager, threads: Int, steps: Int, warmup: Int, profile: Bool,
                    step: () throws -> Void) throws -> StepMeasurement? {
        for _ in 0..<warmup { try step() }
        try comm.barrier()
        averager.resetTimer()
        OpProfile.shared.isEnabled = profile
        OpProfile.shared.reset()
        var times: [Double] = []
        let cpuBefore = ResourceUsage.cpuTicks()
        for _ in 0..<steps {
            let t0 = ResourceUsage.now()
            try step()
            times.append(ResourceUsage.now() - t0)
        }
        let cpuAfter = ResourceUsage.cpuTicks()
        OpProfile.shared.isEnabled = false
        // Steal as a share of the machine's CPU time over the steps, and whether some rank could
        // not tell (1), both the largest over the ranks.
        var steal = [0.0, 1.0]
        if let a = cpuBefore, let b = cpuAfter, b.total > a.total { steal = [Double(b.steal - a.steal) / Double(b.total - a.total), 0] }
        try comm.allreduceMax(&steal)
        // The job's step time is the slowest rank's.
        try times.withUnsafeMutableBufferPointer { try comm.allreduceMax($0) }
        var comms = [averager.communicationSeconds / Double(steps)]
        try comm.allreduceMax(&comms)
        var rss = [Double(ResourceUsage.peakResidentBytes)]
        try comm.allreduceMax(&rss)
        let sgemm = sgemmGFLOPS(threads: threads)
        guard comm.rank == 0 else { return nil }
        let entries = OpProfile.shared.entries.sorted { $0.value.total > $1.value.total }.map { (kind: $0.key, entry: $0.value) }
        return StepMeasurement(times: TimingSummary(times), steps: steps, warmup: warmup, communicationSeconds: comms[0],
                               peakResidentBytes: rss[0], sgemm: sgemm, threads: threads, profile: profile ? entries : nil,
                               steal: steal[1] > 0 ? nil : steal[0])
    }

    /// Prints the figures; `flopsPerStep` is the analytic work of one rank's step and
    /// `imagesPerStep` the images a step processes on all `ranks`.
    func print(flopsPerStep: Double, imagesPerStep: Int, ranks: Int) {
        let t = times
        Swift.print(String(format: "step time: min=%.3f median=%.3f max=%.3f s over %d steps (after %d warm-up)", t.min, t.median, t.max, steps, warmup))
        Swift.print(String(format: "achieved: %.2f GFLOP/s per rank, %.1f images/s in all (%d ranks)",
                           flopsPerStep / t.median / 1e9, Double(imagesPerStep) / t.median, ranks))
        Swift.print(String(format: "communication: %.4f s per step (%.1f%% of the median step)", communicationSeconds, 100 * communicationSeconds / t.median))
        Swift.print(String(format: "peak resident memory: %.0f MB (largest rank)", peakResidentBytes / 1e6))
        Swift.print(String(format: "OpenBLAS sgemm 1024^3: %.1f GFLOP/s on 1 thread, %.1f on %d", sgemm.one, sgemm.all, threads))
        Swift.print(BLAS.kernelDescription)
        // A VM whose host runs other guests can lose CPU time to them (steal): a step measured
        // then is slower for a reason outside the program.
        Swift.print(steal.map { String(format: "host CPU steal during the timed steps: %.1f%% of the machine's CPU time", 100 * $0) }
                    ?? "host CPU steal during the timed steps: unknown (no /proc/stat)")
        guard let profile else { return }
        let total = profile.reduce(0) { $0 + $1.entry.total }
        Swift.print("")
        printTable(header: ["op kind", "calls/step", "forward s", "backward s", "share"], rows: profile.map { e in
            [e.kind, "\(e.entry.calls / steps)", String(format: "%.3f", e.entry.forwardSeconds / Double(steps)),
             String(format: "%.3f", e.entry.backwardSeconds / Double(steps)), String(format: "%.1f%%", 100 * e.entry.total / total)]
        })
        Swift.print(String(format: "(per step; ops account for %.3f of %.3f s)", total / Double(steps), t.median))
    }

    /// OpenBLAS sgemm GFLOP/s at 1024^3 on one thread and on `threads`.
    private static func sgemmGFLOPS(threads: Int) -> (Double, Double) {
        let n = 1024
        let a = [Float](repeating: 0.5, count: n * n), b = a
        var c = a
        func measure(_ t: Int) -> Double {
            BLAS.setThreads(t)
            defer { BLAS.setThreads(1) }
            let s = a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                TimingSummary.measure(repeats: 3) {
                    BLAS.sgemm(m: n, n: n, k: n, a: ap.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n, c: cp.baseAddress!, ldc: n)
                }
            } } }
            return 2 * Double(n * n * n) / s.median / 1e9
        }
        return (measure(1), measure(threads))
    }
}
