import Dispatch

/// Time spent per op kind, forward and backward, across all tapes while enabled
/// (`nas-mpi bench step --profile`). An op's forward time is the time since the previous op on the
/// same tape finished (or since the tape was created), so it includes the op's own checks and
/// output allocation; a backward rule is timed on its own.
public final class OpProfile: @unchecked Sendable {
    public static let shared = OpProfile()

    public struct Entry: Sendable {
        public var forwardSeconds = 0.0
        public var backwardSeconds = 0.0
        public var calls = 0
        public var total: Double { forwardSeconds + backwardSeconds }
    }

    public var isEnabled = false
    public private(set) var entries: [String: Entry] = [:]

    public func reset() { entries = [:] }

    func addForward(_ op: String, _ seconds: Double) {
        entries[op, default: Entry()].forwardSeconds += seconds
        entries[op, default: Entry()].calls += 1
    }

    func addBackward(_ op: String, _ seconds: Double) {
        entries[op, default: Entry()].backwardSeconds += seconds
    }

    @inline(__always)
    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
}
