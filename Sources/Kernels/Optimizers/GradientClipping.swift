/// Gradient clipping by global norm, as PyTorch's `torch.nn.utils.clip_grad_norm_`.

/// Scales all gradients by maxNorm / (norm + 1e-6) when their global L2 norm exceeds maxNorm.
///
/// - Returns: the global norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Variable], maxNorm: Float) -> Float {
    var total = 0.0
    for p in parameters { if let g = p.grad { total += g.squaredNorm() } }
    let norm = Float(total.squareRoot())
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 {
        for p in parameters where p.grad != nil {
            p.grad!.scalars.withUnsafeMutableBufferPointer { g in
                for j in g.indices { g[j] *= coef }
            }
        }
    }
    return norm
}
