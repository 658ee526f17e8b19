import Foundation

/// A dense, contiguous Float32 array with a shape (row-major; images are NCHW).
///
/// `Tensor` is a value type backed by a copy-on-write `[Float]`. Kernels read and write it through
/// `withUnsafeBufferPointer` / `withUnsafeMutableBufferPointer`, so hot loops see one contiguous
/// buffer and no per-element bounds checks.
public struct Tensor: Equatable, Sendable {
    /// The extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.product`.
    public var scalars: [Float]

    /// A tensor filled with one value.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        self.shape = shape
        self.scalars = [Float](repeating: value, count: shape.reduce(1, *))
    }

    /// A tensor over existing scalars.
    /// - Throws: `KernelError.invalidArgument` when the count does not match the shape.
    public init(shape: [Int], scalars: [Float]) throws {
        let n = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), scalars.count == n else {
            throw KernelError.invalidArgument(op: "Tensor", "shape \(shape) holds \(n) elements, got \(scalars.count)")
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// A tensor whose every element `initializer` writes (no zero-filling first).
    ///
    /// - Parameter initializer: must write all `shape.product` elements.
    public init(uninitializedShape shape: [Int], _ initializer: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let n = shape.reduce(1, *)
        self.shape = shape
        self.scalars = [Float](unsafeUninitializedCapacity: n) { buffer, count in
            initializer(buffer)
            count = n
        }
    }

    /// A value dropped after its last use (`Tape.release`): the shape, and no elements.
    init(releasedShape shape: [Int]) {
        self.shape = shape
        self.scalars = []
    }

    /// Whether this is a dropped value (`Tape.release`) of a non-empty shape.
    public var isReleased: Bool { scalars.isEmpty && shape.reduce(1, *) > 0 }

    /// A tensor of zeros with the same shape.
    public static func zeros(like t: Tensor) -> Tensor { Tensor(shape: t.shape) }

    /// The number of elements.
    @inlinable public var count: Int { scalars.count }
    /// The number of dimensions.
    public var rank: Int { shape.count }

    /// The same elements under another shape of equal element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, scalars: scalars)
    }

    /// Sets every element to zero, keeping the storage.
    public mutating func zero() {
        scalars.withUnsafeMutableBufferPointer { p in
            p.update(repeating: 0)
        }
    }

    /// The sum of all elements, accumulated in Double.
    public func sum() -> Double {
        scalars.withUnsafeBufferPointer { p in
            var s = 0.0
            for v in p { s += Double(v) }
            return s
        }
    }

    /// The squared L2 norm, accumulated in Double.
    public func squaredNorm() -> Double {
        scalars.withUnsafeBufferPointer { p in
            var s = 0.0
            for v in p { s += Double(v) * Double(v) }
            return s
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(scalars.count > 8 ? ", ..." : "")])"
    }
}

