/// The collective and point-to-point operations that data-parallel training and the master/worker
/// searches need, independent of MPI.
///
/// `Search` sees only this protocol, so the same trainer runs as one process (`LocalCommunicator`)
/// or as N MPI ranks (`MPICommunicator`). Every collective must be called by all ranks in the same
/// order with the same element count.
public protocol Communicator: AnyObject {
    /// This process's index in 0..<size.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }

    /// Element-wise sum over all ranks, in place; every rank ends with the same values.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Element-wise sum over all ranks of Double values, in place.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Element-wise maximum over all ranks of Double values, in place.
    func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Copies `root`'s buffer into every rank's buffer (same length everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Collects `count` bytes from every rank at `root`, in rank order (`result` has
    /// size * count bytes at the root and is untouched elsewhere).
    func gather(_ buffer: UnsafeRawBufferPointer, into result: UnsafeMutableRawBufferPointer?, root: Int) throws
    /// Blocks until every rank has called it.
    func barrier() throws
    /// `barrier`, giving up after `seconds`: true when every rank arrived in time. For the last
    /// step of a stop, where a rank must leave within the batch system's grace period even if
    /// MPI no longer completes (nothing may follow on this communicator after `false`).
    func barrier(within seconds: Double) throws -> Bool
    /// Sends bytes to one rank (blocking until the buffer can be reused).
    func send(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws
    /// Receives exactly `buffer.count` bytes from one rank.
    ///
    /// To receive from whichever rank sends first, `probe` for the message, then receive from its
    /// `source` and `tag`: messages between two ranks with one tag arrive in the order sent, so the
    /// receive takes the probed message.
    func receive(_ buffer: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws
    /// Waits for a message (not receiving it) and describes it.
    ///
    /// - Parameters:
    ///   - source: the sending rank, or nil for any rank.
    ///   - tag: the message's tag, or nil for any tag.
    /// - Returns: the message's sender, tag and length.
    func probe(source: Int?, tag: Int?) throws -> MessageInfo
    /// Describes a message that has arrived (not receiving it), or returns nil at once when none has.
    ///
    /// - Parameters:
    ///   - source: the sending rank, or nil for any rank.
    ///   - tag: the message's tag, or nil for any tag.
    func iprobe(source: Int?, tag: Int?) throws -> MessageInfo?
    /// Splits the ranks into disjoint communicators, one per `color`, ordered by `key` (then by
    /// rank). Every rank must call it; the new communicator is released when its last reference goes.
    ///
    /// - Parameters:
    ///   - color: the group this rank joins (0 or more).
    ///   - key: this rank's position within its group, relative to the others' keys.
    /// - Returns: this rank's group.
    func split(color: Int, key: Int) throws -> Communicator
    /// Ends every rank of the job with `code`, after printing `message` to standard error.
    func abort(code: Int32, message: String) -> Never
}

/// A message that has arrived but is not yet received, as `probe` and `iprobe` describe it.
public struct MessageInfo: Equatable, Sendable {
    /// The sending rank.
    public let source: Int
    /// The tag it was sent with.
    public let tag: Int
    /// Its length in bytes.
    public let byteCount: Int

    public init(source: Int, tag: Int, byteCount: Int) {
        self.source = source
        self.tag = tag
        self.byteCount = byteCount
    }
}

/// An error from a communicator: a failed MPI call or a misuse such as a bad rank.
public struct CommunicatorError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Communicator {
    /// Sums a Float array over all ranks, in place.
    public func allreduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    /// Sums a Double array over all ranks, in place.
    public func allreduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    /// Element-wise maximum of a Double array over all ranks, in place.
    public func allreduceMax(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceMax($0) }
    }

    /// Averages a Float array over all ranks, in place.
    public func allreduceMean(_ values: inout [Float]) throws {
        try allreduceSum(&values)
        if size > 1 {
            let inv = 1 / Float(size)
            for i in values.indices { values[i] *= inv }
        }
    }

    /// Copies `root`'s array into every rank's array; all ranks must pass the same count.
    public func broadcast(_ values: inout [Float], root: Int = 0) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    /// Copies `root`'s bytes to every rank; the length travels first, so receivers may pass any array.
    public func broadcast(bytes: inout [UInt8], root: Int = 0) throws {
        var length = [Double(bytes.count)]
        try length.withUnsafeMutableBytes { try broadcast($0, root: root) }
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(length[0])) }
        try bytes.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    /// Gathers one Double from each rank at `root` (nil elsewhere).
    public func gather(_ value: Double, root: Int = 0) throws -> [Double]? {
        let mine = [value]
        if rank == root {
            var all = [Double](repeating: 0, count: size)
            try mine.withUnsafeBytes { m in try all.withUnsafeMutableBytes { try gather(m, into: $0, root: root) } }
            return all
        }
        try mine.withUnsafeBytes { try gather($0, into: nil, root: root) }
        return nil
    }

    /// Gathers one UInt64 from each rank at `root` (nil elsewhere).
    public func gather(_ value: UInt64, root: Int = 0) throws -> [UInt64]? {
        let mine = [value]
        if rank == root {
            var all = [UInt64](repeating: 0, count: size)
            try mine.withUnsafeBytes { m in try all.withUnsafeMutableBytes { try gather(m, into: $0, root: root) } }
            return all
        }
        try mine.withUnsafeBytes { try gather($0, into: nil, root: root) }
        return nil
    }

    /// Checks that every rank passes the same value (for example a fused buffer's length).
    ///
    /// - Throws: `CommunicatorError` naming the disagreement.
    public func requireSameOnAllRanks(_ value: Int, what: String) throws {
        guard size > 1 else { return }
        var mx = [Double(value), -Double(value)]
        try allreduceMax(&mx)
        if mx[0] != Double(value) || -mx[1] != Double(value) {
            throw CommunicatorError("\(what) differs across ranks: rank \(rank) has \(value), the range is \(Int(-mx[1]))...\(Int(mx[0]))")
        }
    }
}

extension Communicator {
    public func barrier(within seconds: Double) throws -> Bool {
        try barrier()
        return true
    }
}
