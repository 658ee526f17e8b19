import Foundation

/// What a run cost, for cost.json: wall time, the cores it held (wall x ranks x threads) and the
/// CPU time it actually used.
///
/// CPU time is rank 0's process time (user + system, `getrusage`), summed over the processes of a
/// resumed run (the previous total is read back from cost.json the first time a process writes it).
/// Only rank 0 writes files, and it does so where other ranks do not wait, so the other ranks' CPU
/// time is not collected; every rank does the same work, so the job's total is about ranks x
/// `cpu_seconds` (written as `cpu_seconds_all_ranks_estimate`).
enum RunCost {
    private final class Bases: @unchecked Sendable {
        let lock = NSLock()
        var byPath: [String: Double] = [:]
    }
    private static let bases = Bases()

    /// User plus system CPU seconds of this process so far.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #else
        let who = RUSAGE_SELF
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// CPU seconds spent on the run before this process: what cost.json held when this process
    /// first looked (0 for a new run).
    static func previousCPUSeconds(_ cost: URL) -> Double {
        bases.lock.lock(); defer { bases.lock.unlock() }
        if let b = bases.byPath[cost.path] { return b }
        var base = 0.0
        if let data = FileManager.default.contents(atPath: cost.path),
           let json = try? JSONDecoder().decode([String: JSONValue].self, from: data) {
            base = json["cpu_seconds"]?.double ?? 0
        }
        bases.byPath[cost.path] = base
        return base
    }
}

extension RunDirectory {
    /// Writes cost.json: wall time, ranks, threads per rank, core-seconds and core-hours (the cores
    /// held: wall x ranks x threads), and CPU seconds used (rank 0's; see `RunCost`).
    public func writeCost(seconds: Double, ranks: Int, threads: Int, epochs: Int) throws {
        let cores = Double(ranks * threads)
        let cpu = RunCost.previousCPUSeconds(cost) + RunCost.processCPUSeconds()
        try writeJSON([
            "wall_seconds": .number(seconds), "ranks": .number(Double(ranks)), "threads_per_rank": .number(Double(threads)),
            "core_seconds": .number(seconds * cores), "core_hours": .number(seconds * cores / 3600),
            "cpu_seconds": .number(cpu), "cpu_seconds_ranks": .number(1),
            "cpu_seconds_all_ranks_estimate": .number(cpu * Double(ranks)),
            "epochs_done": .number(Double(epochs)),
        ] as [String: JSONValue], to: cost)
    }
}
