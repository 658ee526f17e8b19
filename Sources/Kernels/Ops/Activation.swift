/// Elementwise activations.

extension Tape {
    /// y = max(x, 0). Any shape.
    public func relu(_ x: Variable) -> Variable {
        var y = x.value
        y.scalars.withUnsafeMutableBufferPointer { p in
            for i in p.indices where p[i] < 0 { p[i] = 0 }
        }
        let yv = y
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                yv.scalars.withUnsafeBufferPointer { yp in
                    for i in 0..<dx.count where yp[i] > 0 { dx[i] += dy[i] }
                }
            }
        }
    }
}
