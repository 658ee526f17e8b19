import Kernels

/// A model with weights and architecture parameters, as the architect sees it.
public protocol ArchitectureModel: AnyObject {
    /// Network weights (trained by SGD on the training split).
    var weights: [Variable] { get }
    /// Architecture parameters (trained by Adam on the validation split).
    var architecture: [Variable] { get }
    /// The mean loss of a batch, on the context's tape.
    func loss(on batch: Batch, _ ctx: ForwardContext) throws -> Variable
}

extension SearchNetwork: ArchitectureModel {
    public func loss(on batch: Batch, _ ctx: ForwardContext) throws -> Variable {
        try loss(batch.images, batch.labels, ctx).loss
    }
}

/// The DARTS architect (reference `architect.py`): updates the architecture parameters with Adam
/// from the gradient of the validation loss, first order (at the current weights) or second order
/// (at the weights after one unrolled SGD step, with the finite-difference Hessian-vector product).
///
/// Liu, Simonyan, Yang. DARTS: Differentiable Architecture Search. ICLR 2019, section 2.3.
public final class Architect {
    public let model: ArchitectureModel
    public let optimizer: Adam
    /// Averages gradients over ranks after each backward pass (identity for one process). Called
    /// with the variables whose gradients were just computed, in the same order on every rank.
    public var reduceGradients: ([Variable]) throws -> Void = { _ in }
    /// Synchronised BatchNorm for the architect's forward passes (nil: per-rank statistics).
    public var statisticsReducer: StatisticsReducer?
    /// An extra term of the architecture loss, built on the given tape from the architecture
    /// parameters alone (so the weights' gradients are unchanged): added to the validation loss
    /// before its backward pass, first and second order (`ArchitectureRegularizer`). nil: none.
    /// The returned loss stays the plain validation loss.
    public var regularization: ((Tape) throws -> Variable?)?

    /// - Parameters: the reference architecture optimiser: Adam lr 3e-4, betas (0.5, 0.999),
    ///   weight decay 1e-3.
    public init(model: ArchitectureModel, learningRate: Float = 3e-4, beta1: Float = 0.5, beta2: Float = 0.999,
                weightDecay: Float = 1e-3) {
        self.model = model
        optimizer = Adam(parameters: model.architecture, learningRate: learningRate, beta1: beta1, beta2: beta2,
                         weightDecay: weightDecay)
    }

    /// One architecture update: computes the gradient and takes an Adam step.
    ///
    /// - Parameters:
    ///   - eta: the weights' current learning rate (the unrolled step's size).
    ///   - weightOptimizer: its momentum buffers, momentum and weight decay define the unrolled step.
    /// - Returns: the validation loss (at the current weights for first order, at the unrolled
    ///   weights for second order).
    @discardableResult
    public func step(train: Batch, validation: Batch, eta: Float, weightOptimizer: SGD, secondOrder: Bool) throws -> Float {
        let loss = try computeGradient(train: train, validation: validation, eta: eta, weightOptimizer: weightOptimizer,
                                       secondOrder: secondOrder)
        optimizer.step()
        return loss
    }

    /// Sets the architecture parameters' gradients (as `step` would use them) without stepping.
    /// Leaves the weights' values unchanged and their gradients cleared.
    public func computeGradient(train: Batch, validation: Batch, eta: Float, weightOptimizer: SGD, secondOrder: Bool) throws -> Float {
        let weights = model.weights, alphas = model.architecture
        defer { setRequiresGrad(weights, true); setRequiresGrad(alphas, true); weights.forEach { $0.zeroGrad() } }
        alphas.forEach { $0.zeroGrad() }
        if !secondOrder {
            // dalpha = grad_alpha L_val(w, alpha); weight gradients are not needed.
            setRequiresGrad(weights, false)
            let loss = try backward(validation, updateStatistics: true, regularized: true)
            try reduceGradients(alphas)
            return loss
        }

        // 1. w' = w - eta * (momentum * buffer + grad_w L_train(w) + wd * w)
        setRequiresGrad(alphas, false)
        weights.forEach { $0.zeroGrad() }
        _ = try backward(train, updateStatistics: true)
        try reduceGradients(weights)
        let theta = weights.map(\.value)
        let mom = weightOptimizer.momentum, wd = weightOptimizer.weightDecay
        // Momentum buffers belong to weights by identity: a method whose parameter list differs
        // from the optimiser's fails here instead of pairing a weight with another's buffer.
        let buffers = try weights.map { w -> Tensor? in
            guard let b = try weightOptimizer.momentumBuffer(of: w) else { return nil }
            guard b.shape == w.shape else {
                throw KernelError.shapeMismatch(op: "Architect", "momentum buffer \(b.shape) for weight '\(w.name)' \(w.shape)")
            }
            return b
        }
        for (i, w) in weights.enumerated() {
            let g = w.grad ?? Tensor.zeros(like: w.value)
            let buffer = buffers[i]
            w.value.scalars.withUnsafeMutableBufferPointer { p in
                for j in 0..<p.count {
                    let m = buffer.map { $0.scalars[j] * mom } ?? 0
                    p[j] -= eta * (m + g.scalars[j] + wd * p[j])
                }
            }
        }

        // 2. At w': dalpha = grad_alpha L_val(w'), v = grad_w' L_val(w'). The reference runs this
        //    on a copy of the model, so the running BatchNorm statistics are left alone.
        setRequiresGrad(alphas, true)
        weights.forEach { $0.zeroGrad() }
        let valLoss = try backward(validation, updateStatistics: false, regularized: true)
        try reduceGradients(weights + alphas)
        var dalpha = alphas.map { $0.grad ?? Tensor.zeros(like: $0.value) }
        let v = weights.map { $0.grad ?? Tensor.zeros(like: $0.value) }
        for (w, t) in zip(weights, theta) { w.value = t }

        // 3. dalpha -= eta * (grad_alpha L_train(w + r v) - grad_alpha L_train(w - r v)) / (2 r),
        //    r = 0.01 / ||v||.
        let hvp = try hessianVectorProduct(train: train, vector: v)
        for k in dalpha.indices {
            for j in 0..<dalpha[k].count { dalpha[k].scalars[j] -= eta * hvp[k].scalars[j] }
        }
        for (a, d) in zip(alphas, dalpha) { a.grad = d }
        return valLoss
    }

    /// The finite-difference approximation of (d²L_train / dalpha dw) · v at the current weights:
    /// (grad_alpha L_train(w + r v) - grad_alpha L_train(w - r v)) / (2 r), r = 0.01 / ||v||.
    /// The weights are restored afterwards. Returns zeros when v = 0.
    public func hessianVectorProduct(train: Batch, vector v: [Tensor], scale: Float = 0.01) throws -> [Tensor] {
        let weights = model.weights, alphas = model.architecture
        let norm = Float(v.reduce(0.0) { $0 + $1.squaredNorm() }.squareRoot())
        guard norm > 0 else { return alphas.map { Tensor.zeros(like: $0.value) } }
        let r = scale / norm
        let theta = weights.map(\.value)
        defer {
            for (w, t) in zip(weights, theta) { w.value = t }
            setRequiresGrad(weights, true)
        }
        setRequiresGrad(weights, false)
        setRequiresGrad(alphas, true)
        func gradientAt(_ sign: Float) throws -> [Tensor] {
            for (k, w) in weights.enumerated() {
                var p = theta[k]
                p.scalars.withUnsafeMutableBufferPointer { pp in
                    v[k].scalars.withUnsafeBufferPointer { vp in
                        for j in 0..<pp.count { pp[j] += sign * r * vp[j] }
                    }
                }
                w.value = p
            }
            alphas.forEach { $0.zeroGrad() }
            _ = try backward(train, updateStatistics: true)
            try reduceGradients(alphas)
            return alphas.map { $0.grad ?? Tensor.zeros(like: $0.value) }
        }
        let plus = try gradientAt(1)
        let minus = try gradientAt(-1)
        alphas.forEach { $0.zeroGrad() }
        return zip(plus, minus).map { p, m in
            var d = p
            for j in 0..<d.count { d.scalars[j] = (p.scalars[j] - m.scalars[j]) / (2 * r) }
            return d
        }
    }

    /// Forward and backward of the mean loss of a batch in training mode, plus the regularisation
    /// term when `regularized`; returns the loss without the term.
    private func backward(_ batch: Batch, updateStatistics: Bool, regularized: Bool = false) throws -> Float {
        let tape = Tape()
        let loss = try model.loss(on: batch, ForwardContext(tape: tape, training: true, updateStatistics: updateStatistics,
                                                            statisticsReducer: statisticsReducer))
        if regularized, let term = try regularization?(tape) {
            try tape.backward(try tape.add(loss, term))
        } else {
            try tape.backward(loss)
        }
        return loss.value.scalars[0]
    }

    private func setRequiresGrad(_ vs: [Variable], _ flag: Bool) {
        for v in vs { v.requiresGrad = flag }
    }
}
