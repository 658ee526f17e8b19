/// Gradient clipping by global norm, as PyTorch's `torch.nn.utils.clip_grad_norm_`, and by row norm.

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

/// Clips each row of the gradients of [R, K] parameters separately: a row whose L2 norm exceeds
/// maxNorm is scaled by maxNorm / (norm + 1e-6), the others are left alone (so no single row, for
/// example one edge's op logits, dominates the update). Parameters of other shapes are skipped.
///
/// - Returns: the largest row norm before clipping.
@discardableResult
public func clipGradientRowNorms(_ parameters: [Variable], maxNorm: Float) -> Float {
    var largest: Float = 0
    for p in parameters where p.shape.count == 2 && p.grad != nil {
        let k = p.shape[1]
        p.grad!.scalars.withUnsafeMutableBufferPointer { g in
            for r in 0..<p.shape[0] {
                var s = 0.0
                for j in (r * k)..<((r + 1) * k) { s += Double(g[j]) * Double(g[j]) }
                let norm = Float(s.squareRoot())
                if norm.isNaN || norm > largest { largest = norm }
                let coef = maxNorm / (norm + 1e-6)
                if coef < 1 { for j in (r * k)..<((r + 1) * k) { g[j] *= coef } }
            }
        }
    }
    return largest
}
