import Foundation

/// The single-process communicator: one rank, collectives are identities.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func allreduceMax(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard root == 0 else { throw CommunicatorError("broadcast: root \(root) outside the 1 rank of a local run") }
    }
    public func gather(_ buffer: UnsafeRawBufferPointer, into result: UnsafeMutableRawBufferPointer?, root: Int) throws {
        guard root == 0, let result, result.count >= buffer.count else {
            throw CommunicatorError("gather: root \(root) and a result buffer of at least \(buffer.count) bytes are needed on a local run")
        }
        if let src = buffer.baseAddress, buffer.count > 0 { result.baseAddress!.copyMemory(from: src, byteCount: buffer.count) }
    }
    public func barrier() throws {}
    public func send(_ buffer: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        throw CommunicatorError("send: a local run has no rank \(destination) to send to")
    }
    public func receive(_ buffer: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        throw CommunicatorError("receive: a local run has no rank \(source) to receive from")
    }
    /// Waiting for a message could never end on one rank, so it is an error.
    public func probe(source: Int?, tag: Int?) throws -> MessageInfo {
        throw CommunicatorError("probe: a local run has no other rank to wait for a message from")
    }
    /// No message ever arrives on one rank.
    public func iprobe(source: Int?, tag: Int?) throws -> MessageInfo? { nil }
    /// Every split of one rank is that rank alone.
    public func split(color: Int, key: Int) throws -> Communicator {
        guard color >= 0 else { throw CommunicatorError("split: color \(color) is negative") }
        return LocalCommunicator()
    }
    public func abort(code: Int32, message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }
}
