/// A tensor that takes part in reverse-mode differentiation: a value and, once backward reaches
/// it, the gradient of the loss with respect to that value.
///
/// Parameters and architecture weights are long-lived leaf variables (`requiresGrad: true`);
/// every op on a `Tape` returns a new, non-leaf variable.
public final class Variable {
    /// The forward value.
    public var value: Tensor
    /// The accumulated gradient, allocated (as zeros) by the first backward rule that adds to it.
    public var grad: Tensor?
    /// Whether backward computes a gradient for this variable.
    public var requiresGrad: Bool
    /// A leaf is created by the user (parameters, inputs); its gradient survives backward.
    public let isLeaf: Bool
    /// A name for messages and checkpoints (e.g. `cells.0._ops.0.op.1.weight`).
    public var name: String
    /// Whether a recorded backward rule reads this variable's value; `Tape.release` keeps such a
    /// value and drops any other.
    public internal(set) var valueReadByBackward = false
    /// Per plane of an [N, C, H, W] value (sample-major): its sum and sum of squares, as
    /// `Reduce.sumAndSquares` gives them, taken by the op that produced the value while each
    /// plane was in cache; BatchNorm's batch statistics read these instead of the value. Nil when
    /// the op did not take them. (An op's output value is never changed after the op.)
    var planeSums: [Float]?
    /// Recomputes the value from values kept anyway, for an op whose output is cheap to redo
    /// (BatchNorm + ReLU from its input): `Tape.release` then drops it even though a backward
    /// rule reads it, and that rule reads it through `valueForBackward()`.
    var rebuild: (() -> Tensor)?
    /// For an op whose output can stand for a second run of it on the same input (pooling):
    /// what `Tape.repeatOp` records again.
    var repeatable: RepeatableOp?

    /// The value for a backward rule: recomputed (and not kept) when it was dropped.
    public func valueForBackward() -> Tensor {
        guard value.isReleased, let rebuild else { return value }
        return rebuild()
    }

    /// A leaf variable.
    public init(_ value: Tensor, requiresGrad: Bool = false, name: String = "") {
        self.value = value
        self.requiresGrad = requiresGrad
        self.isLeaf = true
        self.name = name
    }

    init(op value: Tensor, requiresGrad: Bool) {
        self.value = value
        self.requiresGrad = requiresGrad
        self.isLeaf = false
        self.name = ""
    }

    /// The shape of the value.
    @inlinable public var shape: [Int] { value.shape }

    /// Drops the gradient (the next backward starts from zero).
    public func zeroGrad() { grad = nil }

    /// Adds into the gradient through `body`, or, when there is none yet, lets `body` write it
    /// from scratch into uninitialised memory (`accumulate == false`: every element must be
    /// written), which saves zero-filling and re-reading the buffer.
    @inline(__always)
    public func writeOrAccumulateGrad(_ body: (_ grad: UnsafeMutableBufferPointer<Float>, _ accumulate: Bool) -> Void) {
        if grad == nil {
            grad = Tensor(uninitializedShape: value.shape) { body($0, false) }
        } else {
            grad!.scalars.withUnsafeMutableBufferPointer { body($0, true) }
        }
    }

    /// Adds into the gradient through `body`, allocating it as zeros first if needed.
    @inline(__always)
    public func accumulateGrad(_ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        if grad == nil { grad = Tensor(shape: value.shape) }
        grad!.scalars.withUnsafeMutableBufferPointer { body($0) }
    }
}

/// Records the ops of one forward pass and runs their backward rules in reverse order.
///
/// Design: each op is a method on `Tape` that checks its operands, computes the forward value on
/// contiguous buffers, and (when recording and some input requires a gradient) appends a closure
/// that reads the output's gradient and accumulates into the inputs' gradients. Recording order is
/// a topological order, so `backward` runs the closures last to first. A tape is used for one
/// forward/backward pass; a non-recording tape (`Tape(recording: false)`) evaluates without
/// keeping anything for backward. After an op's rule has run, the gradient of its (non-leaf)
/// output is released, so gradient memory lives no longer than backward needs it.
public final class Tape {
    /// Whether ops append backward rules.
    public let isRecording: Bool
    fileprivate var records: [(output: Variable, op: String, rule: () throws -> Void)] = []
    fileprivate let profile: OpProfile?
    fileprivate var lastOpEnd = 0.0

    /// Whether `release` drops values (false keeps them all: the same results, more memory).
    public let releasesValues: Bool
    /// The bytes of the values `release` dropped on this tape.
    public private(set) var releasedBytes = 0

    /// A tape; `recording: false` gives inference mode.
    public init(recording: Bool = true, releasesValues: Bool = true) {
        self.isRecording = recording
        self.releasesValues = releasesValues
        profile = OpProfile.shared.isEnabled ? OpProfile.shared : nil
        if profile != nil { lastOpEnd = OpProfile.now() }
    }

    /// The number of recorded backward rules.
    public var count: Int { records.count }

    /// Multiply-accumulates of the convolutions and linear layers run on this tape (whole batch),
    /// the analytic count that `nas-mpi summary` and the benchmarks report.
    public internal(set) var multiplyAccumulates: Int = 0

    /// Makes the output of an op; when any input requires a gradient, records `rule`.
    ///
    /// `rule` receives the output's gradient (called only if some consumer produced one).
    /// `op` names the op kind in profiles (default: the calling method's name). `readsInputs` and
    /// `readsOutput` say whether `rule` reads the inputs' values and the output's value (for
    /// `release`); an op that does not say is taken to read both.
    /// `inputsRead`, when given, names the inputs whose values `rule` reads, the others not.
    @inline(__always)
    /// `repeatable` lets `repeatOp` record the op again on this output (a deterministic op whose
    /// rule captures nothing that changes: pooling).
    func output(_ value: Tensor, inputs: [Variable], op: String = #function, readsInputs: Bool = true, readsOutput: Bool = true,
                inputsRead: [Variable]? = nil, repeatable: Bool = false,
                rule: @escaping (_ out: Variable, _ grad: UnsafeBufferPointer<Float>) throws -> Void) -> Variable {
        // A released value has no elements: an op that read one computed garbage.
        precondition(!inputs.contains { $0.value.isReleased }, "\(op): an input's value was released (Tape.release) before this op read it")
        let needs = isRecording && inputs.contains { $0.requiresGrad }
        let out = Variable(op: value, requiresGrad: needs)
        if repeatable {
            out.repeatable = RepeatableOp(inputs: inputs, op: op, readsInputs: readsInputs, readsOutput: readsOutput, rule: rule)
        }
        if needs {
            if let inputsRead {
                for x in inputsRead { x.valueReadByBackward = true }
            } else if readsInputs {
                for x in inputs { x.valueReadByBackward = true }
            }
            out.valueReadByBackward = readsOutput
            records.append((out, op, { [unowned out] in
                guard let g = out.grad else { return }
                try g.scalars.withUnsafeBufferPointer { try rule(out, $0) }
            }))
        }
        if let profile {
            let t = OpProfile.now()
            profile.addForward(Self.kind(op), t - lastOpEnd)
            lastOpEnd = t
        }
        return out
    }

    /// "conv2d(_:_:bias:...)" -> "conv2d".
    static func kind(_ op: String) -> String {
        if let i = op.firstIndex(of: "(") { return String(op[..<i]) }
        return op
    }

    /// Runs backward from a scalar loss, seeding d(loss)/d(loss) = `seed`.
    public func backward(_ loss: Variable, seed: Float = 1) throws {
        try requireArgument(loss.value.count == 1, "backward", "loss must hold one element, has shape \(loss.shape)")
        try backward(loss, gradient: Tensor(shape: loss.shape, repeating: seed))
    }

    /// Runs backward from `output` with an upstream gradient of the same shape.
    public func backward(_ output: Variable, gradient: Tensor) throws {
        try require(gradient.shape == output.shape, "backward", "gradient \(gradient.shape) vs output \(output.shape)")
        try requireArgument(isRecording, "backward", "the tape was created with recording: false")
        output.grad = gradient
        // Each rule is dropped as soon as it has run, releasing the activations it captured, so
        // activation memory shrinks while gradient memory grows.
        var i = records.count - 1
        while i >= 0 {
            let record = records[i]
            records.removeLast()
            if let profile {
                let t = OpProfile.now()
                try record.rule()
                profile.addBackward(Self.kind(record.op), OpProfile.now() - t)
            } else {
                try record.rule()
            }
            if !record.output.isLeaf, record.output !== output { record.output.grad = nil }
            i -= 1
        }
    }
}

/// What `Tape.repeatOp` needs to record an op again: its inputs, name, what its rule reads, the rule.
struct RepeatableOp {
    let inputs: [Variable]
    let op: String
    let readsInputs: Bool, readsOutput: Bool
    let rule: (_ out: Variable, _ grad: UnsafeBufferPointer<Float>) throws -> Void
}

extension Tape {
    /// The op that made `v` run again on the same input, without its forward pass: a new
    /// variable holding v's value (shared, not copied) whose backward runs that op's rule on its
    /// own gradient, at its own place on the tape. Bit for bit what calling the op again gives,
    /// for ops that declare it (pooling): a cell whose edges pool one input the same way computes
    /// the pool once.
    public func repeatOp(_ v: Variable) throws -> Variable {
        guard let r = v.repeatable else {
            throw KernelError.invalidArgument(op: "repeatOp", "the variable was not made by a repeatable op (pooling)")
        }
        let out = output(v.value, inputs: r.inputs, op: r.op, readsInputs: r.readsInputs, readsOutput: r.readsOutput, rule: r.rule)
        out.repeatable = r
        return out
    }
}

extension Tape {
    /// Tells the tape the forward code is done with `v`: its value is dropped unless a recorded
    /// backward rule reads it. The variable itself stays (its shape, and its gradient in
    /// backward). The tape keeps every op's output variable until backward, so without this an
    /// output that only feeds ops whose backward does not read it (a BatchNorm's output summed
    /// into a node, a cell's concatenation under its ReLU) would be held for nothing. A value the
    /// op can rebuild (`Variable.rebuild`) is dropped too, and recomputed when backward reads it.
    /// Leaves are never dropped. Reading a dropped value's elements is a programming error (the
    /// tensor holds none; an op given one as input stops with a message).
    public func release(_ v: Variable) {
        guard releasesValues, !v.isLeaf, !v.valueReadByBackward || v.rebuild != nil, !v.value.isReleased else { return }
        releasedBytes += 4 * v.value.count
        v.value = Tensor(releasedShape: v.value.shape)
    }
}

extension Tape {
    /// Recomputation ("gradient checkpointing"): runs `body` on a non-recording tape, keeping only
    /// its output, and runs it again on a fresh tape when backward reaches it. Activation memory
    /// of the segment is traded for one more forward pass of it.
    ///
    /// - Parameters:
    ///   - inputs: the segment's inputs from this tape; `body` receives stand-ins for them.
    ///   - parametersNeedGrad: whether leaf variables used inside `body` (weights) want gradients;
    ///     they accumulate directly, as they would without recomputation.
    ///   - body: builds the segment on the given tape; `recomputing` is true on the second run
    ///     (the body must then not repeat side effects such as BatchNorm running-average updates).
    public func checkpoint(_ inputs: [Variable], parametersNeedGrad: Bool, op: String = "checkpoint",
                           _ body: @escaping (_ tape: Tape, _ inputs: [Variable], _ recomputing: Bool) throws -> Variable) throws -> Variable {
        let firstTape = Tape(recording: false, releasesValues: releasesValues)
        let first = try body(firstTape, inputs, false)
        multiplyAccumulates += firstTape.multiplyAccumulates
        let needs = isRecording && (parametersNeedGrad || inputs.contains { $0.requiresGrad })
        let out = Variable(op: first.value, requiresGrad: needs)
        if needs {
            // The second run starts from the inputs' values; the output's is not read.
            for x in inputs { x.valueReadByBackward = true }
            records.append((out, op, { [unowned out] in
                guard let g = out.grad else { return }
                let inner = Tape(releasesValues: self.releasesValues)
                let standIns = inputs.map { Variable($0.value, requiresGrad: $0.requiresGrad) }
                let again = try body(inner, standIns, true)
                try inner.backward(again, gradient: g)
                for (original, standIn) in zip(inputs, standIns) where original.requiresGrad {
                    guard let sg = standIn.grad else { continue }
                    original.writeOrAccumulateGrad { d, accumulate in
                        sg.scalars.withUnsafeBufferPointer { s in
                            if accumulate {
                                for i in 0..<d.count { d[i] += s[i] }
                            } else {
                                d.baseAddress!.update(from: s.baseAddress!, count: d.count)
                            }
                        }
                    }
                }
            }))
        }
        if profile != nil { lastOpEnd = OpProfile.now() }
        return out
    }
}
