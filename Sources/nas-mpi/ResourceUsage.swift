import Foundation

/// Process resource figures for benchmark reports.
enum ResourceUsage {
    /// Peak resident set size in bytes (VmHWM from /proc/self/status; 0 where unavailable).
    static var peakResidentBytes: Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            // "VmHWM:\t  823456 kB": the number is right-aligned in 8 columns after a tab, so from
            // 10^7 kB (10 GB) on no space precedes it.
            let kb = line.dropFirst("VmHWM:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }

    /// The machine's CPU time in ticks since boot, from /proc/stat's aggregate "cpu" line: all of
    /// it, and the part the hypervisor gave to other guests while this one wanted to run
    /// (steal); nil where unavailable.
    static func cpuTicks() -> (total: Int, steal: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        // user nice system idle iowait irq softirq steal (guest and guest_nice are inside user and nice)
        let v = line.split(separator: " ").dropFirst().compactMap { Int($0) }
        guard v.count >= 8 else { return nil }
        return (v.prefix(8).reduce(0, +), v[7])
    }

    /// Monotonic seconds.
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Min and median of timings.
struct TimingSummary {
    let min: Double
    let median: Double
    let max: Double

    init(_ samples: [Double]) {
        let s = samples.sorted()
        min = s.first ?? 0
        max = s.last ?? 0
        median = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
    }

    /// Times `body` `repeats` times after `warmup` untimed runs; `before` runs, untimed, before
    /// each run.
    static func measure(repeats: Int, warmup: Int = 1, before: () -> Void = {}, _ body: () -> Void) -> TimingSummary {
        for _ in 0..<warmup { before(); body() }
        var samples: [Double] = []
        for _ in 0..<repeats {
            before()
            let t0 = ResourceUsage.now()
            body()
            samples.append(ResourceUsage.now() - t0)
        }
        return TimingSummary(samples)
    }
}
