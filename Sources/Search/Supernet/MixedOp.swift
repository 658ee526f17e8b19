import Kernels

/// A DARTS mixed edge (reference `MixedOp`): every candidate op applied to the edge's input,
/// combined with the softmaxed architecture weights of that edge.
public final class MixedOp: MixedEdge {
    public let primitives: [Primitive]
    /// One op per primitive; nil for `none`.
    public let ops: [Layer?]

    public init(channels c: Int, stride: Int, primitives: [Primitive], generator: inout RandomGenerator) {
        self.primitives = primitives
        ops = primitives.map {
            makeOperation($0, channels: c, stride: stride, affine: false, poolBatchNorm: true, generator: &generator)
        }
    }

    /// The DARTS edge factory: a full mixed op on every edge.
    public static let factory: EdgeFactory = { spec, g in
        MixedOp(channels: spec.channels, stride: spec.stride, primitives: spec.primitives, generator: &g)
    }

    /// sum_k weights[k] * op_k(x). weights: [K], the edge's row of softmax(alphas).
    ///
    /// With `ctx.fusesOps`, the BatchNorm that ends a sep_conv, a dil_conv or a pooling op is
    /// applied inside the weighted sum (`Tape.weightedBatchNormSum`): the same values.
    public func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext) throws -> Variable {
        try sum(x, weights: weights, ctx, transform: nil)
    }

    /// The same sum over transform(k, op_k(x)) (an edge that changes some paths, e.g. dropout on
    /// their outputs, keeps the rest of this loop and the shared ReLU). The transform sees each
    /// op's whole output, so no BatchNorm is folded into the sum.
    public func forward(_ x: Variable, weights: Variable, _ ctx: ForwardContext,
                        transform: (Int, Variable) throws -> Variable) throws -> Variable {
        try withoutActuallyEscaping(transform) { try sum(x, weights: weights, ctx, transform: $0) }
    }

    /// The weighted sum of both `forward`s (transform nil: the plain one).
    private func sum(_ x: Variable, weights: Variable, _ ctx: ForwardContext,
                     transform: ((Int, Variable) throws -> Variable)?) throws -> Variable {
        let folds = transform == nil && ctx.fusesOps
        var outputs: [Variable] = []
        var norms: [BatchNormApplication?] = []
        var indices: [Int] = []
        outputs.reserveCapacity(ops.count)
        // One ReLU(x) shared by every op that starts with one.
        var activated: Variable?
        func activatedInput() -> Variable {
            if activated == nil { activated = ctx.tape.relu(x) }
            return activated!
        }
        for (k, op) in ops.enumerated() {
            guard let op else { continue }
            var y: Variable
            var norm: BatchNormApplication?
            if folds, let e = op as? EndsWithBatchNorm {
                let (v, bn) = try e.beforeBatchNorm(activatedInput(), relu: false, ctx)
                (y, norm) = (v, bn.application(ctx))
            } else if folds, let p = op as? PoolBatchNorm {
                let (v, bn) = try p.beforeBatchNorm(x, ctx)
                (y, norm) = (v, bn.application(ctx))
            } else if let r = op as? ReLUPrefixed {
                y = try r.forward(activated: activatedInput(), ctx)
            } else {
                y = try op.forward(x, ctx)
            }
            outputs.append(try transform?(k, y) ?? y)
            norms.append(norm)
            indices.append(k)
        }
        return folds ? try ctx.tape.weightedBatchNormSum(outputs, weights: weights, indices: indices, batchNorms: norms)
            : try ctx.tape.weightedSum(outputs, weights: weights, indices: indices)
    }

    /// op_k(x) alone: the one op of a supernet path, no weighting, no other op computed.
    public func forward(_ x: Variable, op k: Int, _ ctx: ForwardContext) throws -> Variable {
        guard ops.indices.contains(k), let op = ops[k] else {
            throw KernelError.invalidArgument(op: "MixedOp", "a path's op must be one of the edge's ops other than none, got index \(k) of \(primitives.map(\.name))")
        }
        return try op.forward(x, ctx)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        throw KernelError.invalidArgument(op: "MixedOp", "a mixed edge needs its architecture weights")
    }

    public func collect(prefix: String, into state: inout NamedState) {
        for (k, op) in ops.enumerated() { op?.collect(prefix: qualified(prefix, "_ops.\(k)"), into: &state) }
    }
}
