/// Fully connected layer, as PyTorch's `nn.Linear`.

extension Tape {
    /// y = x wᵀ + b. x: [N, in], w: [out, in], b: [out] -> [N, out].
    public func linear(_ x: Variable, _ w: Variable, bias b: Variable? = nil) throws -> Variable {
        let op = "linear"
        try require(x.shape.count == 2 && w.shape.count == 2 && x.shape[1] == w.shape[1], op,
                    "input \(x.shape) vs weight \(w.shape): expected [N, in] and [out, in]")
        let (n, fin, fout) = (x.shape[0], x.shape[1], w.shape[0])
        if let b { try require(b.shape == [fout], op, "bias \(b.shape) vs \(fout) outputs") }
        multiplyAccumulates += n * fin * fout
        var y = Tensor(shape: [n, fout])
        y.scalars.withUnsafeMutableBufferPointer { yp in
            x.value.scalars.withUnsafeBufferPointer { xp in
                w.value.scalars.withUnsafeBufferPointer { wp in
                    BLAS.sgemm(transB: true, m: n, n: fout, k: fin, a: xp.baseAddress!, lda: fin,
                               b: wp.baseAddress!, ldb: fin, c: yp.baseAddress!, ldc: fout)
                }
            }
            if let b {
                for i in 0..<n { for j in 0..<fout { yp[i * fout + j] += b.value.scalars[j] } }
            }
        }
        var inputs = [x, w]
        if let b { inputs.append(b) }
        return output(y, inputs: inputs) { _, dy in
            let dyp = dy.baseAddress!
            if x.requiresGrad {
                x.accumulateGrad { dx in
                    w.value.scalars.withUnsafeBufferPointer { wp in
                        BLAS.sgemm(m: n, n: fin, k: fout, a: dyp, lda: fout, b: wp.baseAddress!, ldb: fin,
                                   beta: 1, c: dx.baseAddress!, ldc: fin)
                    }
                }
            }
            if w.requiresGrad {
                w.accumulateGrad { dw in
                    x.value.scalars.withUnsafeBufferPointer { xp in
                        BLAS.sgemm(transA: true, m: fout, n: fin, k: n, a: dyp, lda: fout, b: xp.baseAddress!, ldb: fin,
                                   beta: 1, c: dw.baseAddress!, ldc: fin)
                    }
                }
            }
            if let b, b.requiresGrad {
                b.accumulateGrad { db in
                    for i in 0..<n { for j in 0..<fout { db[j] += dy[i * fout + j] } }
                }
            }
        }
    }
}
