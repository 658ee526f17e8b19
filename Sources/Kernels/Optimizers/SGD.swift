/// Stochastic gradient descent with momentum and weight decay, with PyTorch's `torch.optim.SGD`
/// semantics (dampening 0, no Nesterov):
///
///     d = grad + weightDecay * p
///     buf = d                        (first step)
///     buf = momentum * buf + d       (later steps)
///     p  -= lr * buf
public final class SGD {
    public let parameters: [Variable]
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    /// One momentum buffer per parameter; nil until that parameter's first step.
    public var momentumBuffers: [Tensor?]
    /// Each parameter's position, by identity.
    private let positions: [ObjectIdentifier: Int]

    public init(parameters: [Variable], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
        self.parameters = parameters
        positions = Dictionary(parameters.enumerated().map { (ObjectIdentifier($0.element), $0.offset) }, uniquingKeysWith: { a, _ in a })
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.momentumBuffers = Array(repeating: nil, count: parameters.count)
    }

    /// Applies one update to every parameter that has a gradient.
    public func step() {
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            let (lr, mom, wd) = (learningRate, momentum, weightDecay)
            if mom != 0, momentumBuffers[i] == nil {
                // PyTorch initialises the buffer to the first d, not to zero.
                var d = g
                p.value.scalars.withUnsafeBufferPointer { pp in
                    d.scalars.withUnsafeMutableBufferPointer { dp in
                        for j in 0..<dp.count { dp[j] += wd * pp[j] }
                    }
                }
                momentumBuffers[i] = d
                p.value.scalars.withUnsafeMutableBufferPointer { pp in
                    d.scalars.withUnsafeBufferPointer { dp in
                        for j in 0..<pp.count { pp[j] -= lr * dp[j] }
                    }
                }
                continue
            }
            p.value.scalars.withUnsafeMutableBufferPointer { pp in
                g.scalars.withUnsafeBufferPointer { gp in
                    if mom == 0 {
                        for j in 0..<pp.count { pp[j] -= lr * (gp[j] + wd * pp[j]) }
                    } else {
                        momentumBuffers[i]!.scalars.withUnsafeMutableBufferPointer { bp in
                            for j in 0..<pp.count {
                                let d = gp[j] + wd * pp[j]
                                bp[j] = mom * bp[j] + d
                                pp[j] -= lr * bp[j]
                            }
                        }
                    }
                }
            }
        }
    }

    /// Clears the gradients of all parameters.
    public func zeroGrad() { parameters.forEach { $0.zeroGrad() } }

    /// The momentum buffer of `parameter`, found by identity (not by position); nil before its
    /// first step.
    /// - Throws: `KernelError` when `parameter` is not one this optimiser updates.
    public func momentumBuffer(of parameter: Variable) throws -> Tensor? {
        guard let i = positions[ObjectIdentifier(parameter)] else {
            throw KernelError.invalidArgument(op: "SGD", "variable '\(parameter.name)' \(parameter.shape) is not among the optimiser's \(parameters.count) parameters")
        }
        return momentumBuffers[i]
    }
}
