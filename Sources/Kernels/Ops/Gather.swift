/// Gathers: an embedding lookup (rows of a table) and a subset of the columns of a matrix (the
/// allowed entries of a masked categorical distribution). Backward scatters the upstream gradient
/// back, adding where an index repeats.

extension Tape {
    /// Rows `indices` of a table, as PyTorch's `nn.Embedding`.
    ///
    /// table: [V, D], indices: N values in 0..<V -> [N, D]. Backward: dtable[indices[n]] += dy[n].
    public func embedding(_ table: Variable, indices: [Int]) throws -> Variable {
        let op = "embedding"
        try require(table.shape.count == 2, op, "table must be [V, D], got \(table.shape)")
        let (v, d) = (table.shape[0], table.shape[1])
        try requireArgument(indices.allSatisfy { $0 >= 0 && $0 < v }, op, "indices \(indices) must lie in 0..<\(v)")
        let y = Tensor(uninitializedShape: [indices.count, d]) { out in
            table.value.scalars.withUnsafeBufferPointer { tp in
                for (n, row) in indices.enumerated() {
                    (out.baseAddress! + n * d).update(from: tp.baseAddress! + row * d, count: d)
                }
            }
        }
        return output(y, inputs: [table]) { _, dy in
            table.accumulateGrad { dt in
                for (n, row) in indices.enumerated() {
                    for j in 0..<d { dt[row * d + j] += dy[n * d + j] }
                }
            }
        }
    }

    /// Columns `columns` of x, in that order.
    ///
    /// x: [N, K], columns: M values in 0..<K -> [N, M]. Backward: dx[:, columns[m]] += dy[:, m].
    public func gatherColumns(_ x: Variable, _ columns: [Int]) throws -> Variable {
        let op = "gatherColumns"
        try require(x.shape.count == 2, op, "input must be [N, K], got \(x.shape)")
        let (n, k, m) = (x.shape[0], x.shape[1], columns.count)
        try requireArgument(!columns.isEmpty && columns.allSatisfy { $0 >= 0 && $0 < k }, op,
                            "columns \(columns) must be non-empty and lie in 0..<\(k)")
        let y = Tensor(uninitializedShape: [n, m]) { out in
            x.value.scalars.withUnsafeBufferPointer { xp in
                for i in 0..<n { for (j, c) in columns.enumerated() { out[i * m + j] = xp[i * k + c] } }
            }
        }
        return output(y, inputs: [x]) { _, dy in
            x.accumulateGrad { dx in
                for i in 0..<n { for (j, c) in columns.enumerated() { dx[i * k + c] += dy[i * m + j] } }
            }
        }
    }
}
