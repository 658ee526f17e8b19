import ArgumentParser
import Distributed
import Foundation

/// `nas-mpi bench allreduce`: the time of one allreduce of a gradient-sized buffer across the
/// job's ranks, checked for correctness. Started without mpirun it runs as one rank.
struct BenchAllreduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "Time MPI allreduce of a Float buffer across the ranks of the job."
    )

    @Option(help: "Floats per allreduce (the DARTS C=16 supernet has 1.9 M parameters).") var floats = 2_000_000
    @Option(help: "Timed allreduces (after one warm-up).") var repeats = 10

    func validate() throws {
        guard floats >= 1 else { throw ValidationError("--floats must be at least 1, got \(floats)") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
    }

    func run() throws {
        let comm = MPIEnvironment.start()
        var buffer = [Float](repeating: 0, count: floats)
        var samples: [Double] = []
        for i in 0...repeats {
            for j in buffer.indices { buffer[j] = Float(comm.rank + 1) }
            try comm.barrier()
            let t0 = ResourceUsage.now()
            try comm.allreduceSum(&buffer)
            if i > 0 { samples.append(ResourceUsage.now() - t0) }
        }
        let expected = Float(comm.size * (comm.size + 1) / 2)
        guard buffer.allSatisfy({ $0 == expected }) else {
            comm.abort(code: 3, message: "allreduce returned a wrong sum (expected \(expected) everywhere)")
        }
        // The slowest rank's median is the job's.
        var worst = [TimingSummary(samples).median]
        try comm.allreduceMax(&worst)
        if comm.rank == 0 {
            let mb = Double(floats * 4) / 1e6
            print(String(format: "ranks: %d  floats: %d (%.1f MB)  allreduce median: %.3f ms  bus bandwidth: %.2f GB/s  result: correct",
                         comm.size, floats, mb, worst[0] * 1e3,
                         comm.size > 1 ? 2 * Double(comm.size - 1) / Double(comm.size) * mb / 1e3 / worst[0] : 0))
        }
    }
}
