import Distributed
import Kernels

/// The dominant eigenvalue of the Hessian of the validation loss with respect to the op logits
/// (alphas_normal and alphas_reduce together), the curvature signal of DARTS' collapse: it grows
/// as the search drifts into sharp regions of the architecture space whose discretised cell
/// generalises badly. Power iteration on finite-difference Hessian-vector products,
/// H v ≈ (g(a + r v) - g(a - r v)) / 2r with g = grad_alpha L_val and r = 0.01 / ||v|| (as the
/// reference architect's Hessian-vector product), so no second derivatives are taped.
///
/// Zela, Elsken, Saikia, Marrakchi, Brox, Hutter. Understanding and Robustifying Differentiable
/// Architecture Search. ICLR 2020, section 4.
public struct HessianEigenvalue {
    /// Power iterations (Hessian-vector products).
    public var iterations: Int
    /// Seed of the start vector (a fixed vector, so successive epochs are comparable).
    public var seed: UInt64
    /// Finite-difference step: r = scale / ||v||.
    public var scale: Float

    public init(iterations: Int = 20, seed: UInt64, scale: Float = 0.01) {
        self.iterations = iterations
        self.seed = seed
        self.scale = scale
    }

    /// The dominant (largest in magnitude, signed) eigenvalue of the symmetric operator `product`
    /// on vectors of `dimension` entries: the Rayleigh quotient v·Hv of the last iterate.
    public func powerIteration(dimension: Int, product: ([Float]) throws -> [Float]) rethrows -> Double {
        guard dimension > 0 else { return 0 }
        var g = RandomGenerator(seed: seed, stream: .hessian)
        var v = normalised((0..<dimension).map { _ in g.normal() })
        var lambda = 0.0
        for _ in 0..<max(iterations, 1) {
            let w = try product(v)
            lambda = zip(v, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let n = norm(w)
            guard n > 0, n.isFinite else { return n.isFinite ? 0 : .nan }
            v = w.map { Float(Double($0) / n) }
        }
        return lambda
    }

    /// The dominant eigenvalue of d²L/dalpha² for the mean loss over `batches` (this rank's shards;
    /// `reduce` averages the gradients over ranks, as the architect does), at the current weights
    /// in training mode (batch statistics) without touching the running statistics. The weights,
    /// the alphas and every gradient are as before afterwards.
    ///
    /// - Parameters:
    ///   - alphas: the parameters the Hessian is taken over (the op logits, not PC-DARTS' betas).
    public func dominant(model: ArchitectureModel, alphas: [Variable], batches: [Batch],
                         statisticsReducer: StatisticsReducer? = nil,
                         reduce: ([Variable]) throws -> Void) throws -> Double {
        let weights = model.weights, architecture = model.architecture
        let values = alphas.map(\.value)
        let sizes = alphas.map(\.value.count)
        let saved = (weights + architecture).map { ($0, $0.requiresGrad, $0.grad) }
        defer {
            for (a, t) in zip(alphas, values) { a.value = t }
            for (v, flag, grad) in saved { v.requiresGrad = flag; v.grad = grad }
        }
        (weights + architecture).forEach { $0.requiresGrad = false }
        alphas.forEach { $0.requiresGrad = true }
        /// grad_alpha of the mean loss over the batches, at alphas = values + shift, flattened.
        func gradient(shift: [Float]) throws -> [Float] {
            var o = 0
            for (k, a) in alphas.enumerated() {
                var t = values[k]
                for j in 0..<t.count { t.scalars[j] += shift[o + j] }
                a.value = t
                a.zeroGrad()
                o += sizes[k]
            }
            for batch in batches {
                let tape = Tape()
                let loss = try model.loss(on: batch, ForwardContext(tape: tape, training: true, updateStatistics: false,
                                                                    statisticsReducer: statisticsReducer))
                try tape.backward(tape.scale(loss, 1 / Float(batches.count)))
            }
            try reduce(alphas)
            return alphas.flatMap { $0.grad?.scalars ?? [Float](repeating: 0, count: $0.value.count) }
        }
        return try powerIteration(dimension: sizes.reduce(0, +)) { v in
            let r = scale / Float(norm(v))
            let plus = try gradient(shift: v.map { r * $0 })
            let minus = try gradient(shift: v.map { -r * $0 })
            return zip(plus, minus).map { ($0 - $1) / (2 * r) }
        }
    }

    private func norm(_ v: [Float]) -> Double { v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
    private func normalised(_ v: [Float]) -> [Float] {
        let n = norm(v)
        return n > 0 ? v.map { Float(Double($0) / n) } : v
    }
}

extension HessianEigenvalue {
    /// Validation batches the eigenvalue is averaged over (the first ones of the split, fixed).
    public static let batches = 2

    /// The dominant eigenvalue for a search method's supernet over the first `batches` global
    /// batches of the validation split (no augmentation; rank r takes its shard of each), with
    /// the gradients averaged over ranks.
    public func dominant(of method: SearchMethod, validation: ImageDataset, batchSize: Int, averager: GradientAverager) throws -> Double {
        let comm = averager.comm
        let local = batchSize / comm.size
        var unused = RandomGenerator(seed: seed, stream: .hessian)
        let batches = (0..<max(1, min(Self.batches, validation.count / batchSize))).map { b in
            validation.batch((0..<local).map { b * batchSize + comm.rank * local + $0 }, augment: false, generator: &unused)
        }
        return try dominant(model: method.network, alphas: [method.network.alphasNormal, method.network.alphasReduce], batches: batches,
                            statisticsReducer: method.training.statisticsReducer, reduce: { try averager.average($0) })
    }
}
