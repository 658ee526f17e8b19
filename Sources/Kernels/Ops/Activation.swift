import Foundation

/// Elementwise activations: ReLU, and the sigmoid and tanh of an LSTM's gates.

extension Tape {
    /// y = max(x, 0). Any shape.
    ///
    /// Both passes are branch-free (a select per element), so they vectorise and do not pay for
    /// mispredicted branches on inputs of random sign (the backward pass spells its select out in
    /// SIMD, see `Elementwise.passWherePositive`).
    public func relu(_ x: Variable) -> Variable {
        let n = x.value.count
        let y = Tensor(uninitializedShape: x.shape) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                let (src, dst) = (xp.baseAddress!, out.baseAddress!)
                Parallel.forRanges(n) { r in
                    for i in r { dst[i] = max(src[i], 0) }
                }
            }
        }
        // The mask is read from the output: x's value is not kept for backward.
        return output(y, inputs: [x], readsInputs: false) { out, dy in
            x.writeOrAccumulateGrad { dx, accumulate in
                out.value.scalars.withUnsafeBufferPointer { yp in
                    let (d, g, v) = (dx.baseAddress!, dy.baseAddress!, yp.baseAddress!)
                    Parallel.forRanges(n) { r in
                        Elementwise.passWherePositive(g + r.lowerBound, gate: v + r.lowerBound, into: d + r.lowerBound,
                                                      r.count, accumulate: accumulate)
                    }
                }
            }
        }
    }
}

extension Tape {
    /// y = 1 / (1 + exp(-x)). Any shape. Backward from the output: dx += dy * y * (1 - y).
    public func sigmoid(_ x: Variable) -> Variable {
        let y = Tensor(uninitializedShape: x.shape) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                for i in 0..<out.count { out[i] = 1 / (1 + expf(-xp[i])) }
            }
        }
        return output(y, inputs: [x]) { out, dy in
            x.accumulateGrad { dx in
                out.value.scalars.withUnsafeBufferPointer { yp in
                    for i in 0..<dx.count { dx[i] += dy[i] * yp[i] * (1 - yp[i]) }
                }
            }
        }
    }

    /// y = tanh(x). Any shape. Backward from the output: dx += dy * (1 - y²).
    public func tanh(_ x: Variable) -> Variable {
        let y = Tensor(uninitializedShape: x.shape) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                for i in 0..<out.count { out[i] = tanhf(xp[i]) }
            }
        }
        return output(y, inputs: [x]) { out, dy in
            x.accumulateGrad { dx in
                out.value.scalars.withUnsafeBufferPointer { yp in
                    for i in 0..<dx.count { dx[i] += dy[i] * (1 - yp[i] * yp[i]) }
                }
            }
        }
    }
}
