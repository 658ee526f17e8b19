import Foundation

/// Adam with PyTorch's `torch.optim.Adam` semantics: weight decay is added to the gradient
/// (L2, not AdamW), and bias corrections use the per-optimizer step count:
///
///     g  = grad + weightDecay * p
///     m  = beta1 * m + (1 - beta1) * g
///     v  = beta2 * v + (1 - beta2) * g^2
///     p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
public final class Adam {
    public let parameters: [Variable]
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let weightDecay: Float
    /// Steps taken (t in the bias corrections).
    public var stepCount: Int = 0
    public var firstMoments: [Tensor]
    public var secondMoments: [Tensor]

    public init(parameters: [Variable], learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        firstMoments = parameters.map { Tensor.zeros(like: $0.value) }
        secondMoments = parameters.map { Tensor.zeros(like: $0.value) }
    }

    /// Applies one update to every parameter that has a gradient.
    public func step() {
        stepCount += 1
        let t = Double(stepCount)
        let bc1 = 1 - pow(Double(beta1), t)
        let bc2 = 1 - pow(Double(beta2), t)
        let stepSize = Float(Double(learningRate) / bc1)
        let sqrtBc2 = Float(bc2.squareRoot())
        let (b1, b2, eps, wd) = (beta1, beta2, epsilon, weightDecay)
        for (i, p) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            p.value.scalars.withUnsafeMutableBufferPointer { pp in
                g.scalars.withUnsafeBufferPointer { gp in
                    firstMoments[i].scalars.withUnsafeMutableBufferPointer { m in
                        secondMoments[i].scalars.withUnsafeMutableBufferPointer { v in
                            for j in 0..<pp.count {
                                let gj = gp[j] + wd * pp[j]
                                m[j] = b1 * m[j] + (1 - b1) * gj
                                v[j] = b2 * v[j] + (1 - b2) * gj * gj
                                pp[j] -= stepSize * m[j] / (v[j].squareRoot() / sqrtBc2 + eps)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Clears the gradients of all parameters.
    public func zeroGrad() { parameters.forEach { $0.zeroGrad() } }
}
