/// An error raised by an op when its inputs do not fit: it names the op and the shapes.
///
/// Ops check shapes and arguments before they touch memory, so a mismatch never reads or writes
/// out of bounds; it throws one of these instead.
public enum KernelError: Error, Equatable, CustomStringConvertible {
    /// The shapes of an op's operands are incompatible.
    case shapeMismatch(op: String, String)
    /// An argument is outside its domain (a non-positive stride, a probability above 1, ...).
    case invalidArgument(op: String, String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, detail): return "\(op): shape mismatch: \(detail)"
        case let .invalidArgument(op, detail): return "\(op): invalid argument: \(detail)"
        }
    }

    /// The op that raised the error.
    public var op: String {
        switch self {
        case let .shapeMismatch(op, _), let .invalidArgument(op, _): return op
        }
    }
}

extension KernelError: CustomDebugStringConvertible {
    public var debugDescription: String { description }
}

/// Throws `KernelError.shapeMismatch` unless `condition` holds.
@inline(__always)
func require(_ condition: Bool, _ op: String, _ detail: @autoclosure () -> String) throws {
    if !condition { throw KernelError.shapeMismatch(op: op, detail()) }
}

/// Throws `KernelError.invalidArgument` unless `condition` holds.
@inline(__always)
func requireArgument(_ condition: Bool, _ op: String, _ detail: @autoclosure () -> String) throws {
    if !condition { throw KernelError.invalidArgument(op: op, detail()) }
}
