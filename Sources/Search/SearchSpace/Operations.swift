import Kernels

/// The DARTS operations (reference `operations.py`): the candidate ops of a mixed edge and the
/// cell preprocessing. Module and parameter names follow the reference so that state-dict names
/// match (`op.1.weight`, `conv_1.weight`, `bn.running_mean`).

/// An op whose first step is a ReLU of its input. A mixed edge computes ReLU(x) once and hands it
/// to all such ops (sep_conv, dil_conv, FactorizedReduce), instead of four identical ReLUs.
public protocol ReLUPrefixed: Layer {
    /// The op's output given ReLU(x) already computed.
    func forward(activated h: Variable, _ ctx: ForwardContext) throws -> Variable

    /// The op's output given ReLU(x) as a cell hands it on (the concatenation not necessarily
    /// formed). By default the op reads the concatenation's ReLU (`ActivatedCellOutput.tensor`).
    func forward(activated h: ActivatedCellOutput, _ ctx: ForwardContext) throws -> Variable
}

extension ReLUPrefixed {
    public func forward(activated h: ActivatedCellOutput, _ ctx: ForwardContext) throws -> Variable {
        try forward(activated: try h.tensor(ctx.tape), ctx)
    }
}

/// A cell's output as the next cells read it: ReLU of the concatenation of `parts` along
/// channels. Either the cell's node states, whose ReLU each reader applies as it reads them (a
/// 1x1 preprocessing: `Tape.reluConcatConv2d`), or one tensor that holds it already.
public final class ActivatedCellOutput {
    /// The node states (`isTensor` false) or the activated tensor.
    public let parts: [Variable]
    public let isTensor: Bool
    private var formed: Variable?

    /// ReLU(concatenation of `states`), not formed until a reader needs the tensor.
    public init(states: [Variable]) {
        parts = states
        isTensor = false
    }

    /// The activated tensor itself.
    public init(activated: Variable) {
        parts = [activated]
        isTensor = true
        formed = activated
    }

    /// The activated tensor: formed on `tape` at the first call (`concatChannelsReLU`), that
    /// tensor at later ones.
    public func tensor(_ tape: Tape) throws -> Variable {
        if let formed { return formed }
        let t = try tape.concatChannelsReLU(parts)
        formed = t
        return t
    }
}

extension Sequential {
    /// The layers after the leading ReLU.
    func forwardAfterReLU(_ h: Variable, _ ctx: ForwardContext) throws -> Variable {
        precondition(layers.first is ReLULayer, "forwardAfterReLU on a Sequential that does not start with ReLU")
        var y = h
        for l in layers.dropFirst() { y = try l.forward(y, ctx) }
        return y
    }
}

/// An op that starts with ReLU and ends with BatchNorm (sep_conv, dil_conv): its output before
/// that BatchNorm, so that a cell node's sum can apply it on the fly (`Tape.batchNormSum`). The
/// op's forward passes are that output through the BatchNorm.
public protocol EndsWithBatchNorm: ReLUPrefixed {
    /// The op's output before its last BatchNorm, and that BatchNorm, from x (with `relu`, before
    /// the leading ReLU; without, ReLU(x) already computed).
    func beforeBatchNorm(_ x: Variable, relu: Bool, _ ctx: ForwardContext) throws -> (Variable, BatchNormLayer)
}

extension EndsWithBatchNorm {
    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        let (y, bn) = try beforeBatchNorm(x, relu: true, ctx)
        return try bn.forward(y, ctx)
    }

    public func forward(activated h: Variable, _ ctx: ForwardContext) throws -> Variable {
        let (y, bn) = try beforeBatchNorm(h, relu: false, ctx)
        return try bn.forward(y, ctx)
    }
}

/// ReLU, convolution, BatchNorm (`ReLUConvBN`): children under `op`.
public final class ReLUConvBN: ReLUPrefixed {
    public let op: Sequential

    public init(_ cin: Int, _ cout: Int, kernel: Int, stride: Int, padding: Int, affine: Bool, generator: inout RandomGenerator) {
        op = Sequential([
            ReLULayer(),
            Conv2dLayer(cin, cout, kernel: kernel, stride: stride, padding: padding, generator: &generator),
            BatchNormLayer(cout, affine: affine),
        ])
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable { try op.forward(x, ctx) }
    public func forward(activated h: Variable, _ ctx: ForwardContext) throws -> Variable { try op.forwardAfterReLU(h, ctx) }

    /// A 1x1 convolution reads the node states where they lie (`Tape.reluConcatConv2d`, the same
    /// values as on the concatenation); other convolutions read the concatenation.
    public func forward(activated h: ActivatedCellOutput, _ ctx: ForwardContext) throws -> Variable {
        let conv = op.layers[1] as! Conv2dLayer
        let pointwise = conv.weight.shape[2] == 1 && conv.weight.shape[3] == 1 && conv.stride == (1, 1) && conv.padding == (0, 0)
            && conv.dilation == 1 && conv.groups == 1
        // A cell's node states are distinct tensors (a genotype lists each concatenated node once).
        guard !h.isTensor, pointwise else {
            return try forward(activated: try h.tensor(ctx.tape), ctx)
        }
        var y = try ctx.tape.reluConcatConv2d(h.parts, conv.weight)
        for l in op.layers.dropFirst(2) { y = try l.forward(y, ctx) }
        return y
    }

    public func collect(prefix: String, into state: inout NamedState) { op.collect(prefix: qualified(prefix, "op"), into: &state) }
}

/// ReLU, depthwise k x k with dilation, 1x1, BatchNorm (`DilConv`).
public final class DilConv: EndsWithBatchNorm {
    public let op: Sequential

    public init(_ cin: Int, _ cout: Int, kernel: Int, stride: Int, padding: Int, dilation: Int, affine: Bool,
                generator: inout RandomGenerator) {
        op = Sequential([
            ReLULayer(),
            Conv2dLayer(cin, cin, kernel: kernel, stride: stride, padding: padding, dilation: dilation, groups: cin, generator: &generator),
            Conv2dLayer(cin, cout, kernel: 1, generator: &generator),
            BatchNormLayer(cout, affine: affine),
        ])
    }

    /// Where the depthwise convolution has stride 1, ReLU, depthwise and 1x1 convolutions run as
    /// one op per sample (`depthwisePointwise`); then BatchNorm.
    public func beforeBatchNorm(_ x: Variable, relu: Bool, _ ctx: ForwardContext) throws -> (Variable, BatchNormLayer) {
        let l = op.layers
        return (try depthwisePointwise(x, l[1] as! Conv2dLayer, l[2] as! Conv2dLayer, relu: relu, ctx), l[3] as! BatchNormLayer)
    }
    public func collect(prefix: String, into state: inout NamedState) { op.collect(prefix: qualified(prefix, "op"), into: &state) }
}

/// pointwise(depthwise(x)), with `relu` of ReLU(x): one op per sample (`depthwisePointwiseConv2d`)
/// where the depthwise convolution has stride 1 and `ctx.fusesOps`, else the layers one by one
/// (the ReLU inside a stride-1 depthwise convolution).
func depthwisePointwise(_ x: Variable, _ depthwise: Conv2dLayer, _ pointwise: Conv2dLayer, relu: Bool,
                        _ ctx: ForwardContext) throws -> Variable {
    if fusesDepthwisePointwise(x, depthwise, ctx) {
        return try ctx.tape.depthwisePointwiseConv2d(x, depthwise: depthwise.weight, pointwise: pointwise.weight,
                                                     padding: depthwise.padding.0, dilation: depthwise.dilation, reluInput: relu)
    }
    let d = relu ? try depthwise.forwardAfterFusedReLU(x, ctx) ?? depthwise.forward(ctx.tape.relu(x), ctx) : try depthwise.forward(x, ctx)
    return try pointwise.forward(d, ctx)
}

/// Whether `depthwise` then a 1x1 convolution on x run as one op: a stride-1 depthwise layer
/// with `ctx.fusesOps`.
func fusesDepthwisePointwise(_ x: Variable, _ depthwise: Conv2dLayer, _ ctx: ForwardContext) -> Bool {
    ctx.fusesOps && depthwise.stride == (1, 1) && depthwise.padding.0 == depthwise.padding.1 && depthwise.groups == x.shape[1]
        && depthwise.groups > 1
}

extension Conv2dLayer {
    /// The convolution of ReLU(x) in one op, for a stride-1 depthwise layer; nil for other layers.
    func forwardAfterFusedReLU(_ x: Variable, _ ctx: ForwardContext) throws -> Variable? {
        guard stride == (1, 1), padding.0 == padding.1, groups == x.shape[1], groups > 1 else { return nil }
        return try ctx.tape.reluDepthwiseConv2d(x, weight, padding: padding.0, dilation: dilation)
    }
}

/// Two stacked (ReLU, depthwise, 1x1, BatchNorm) blocks, the first with the stride (`SepConv`).
public final class SepConv: EndsWithBatchNorm {
    public let op: Sequential

    public init(_ cin: Int, _ cout: Int, kernel: Int, stride: Int, padding: Int, affine: Bool, generator: inout RandomGenerator) {
        op = Sequential([
            ReLULayer(),
            Conv2dLayer(cin, cin, kernel: kernel, stride: stride, padding: padding, groups: cin, generator: &generator),
            Conv2dLayer(cin, cin, kernel: 1, generator: &generator),
            BatchNormLayer(cin, affine: affine),
            ReLULayer(),
            Conv2dLayer(cin, cin, kernel: kernel, stride: 1, padding: padding, groups: cin, generator: &generator),
            Conv2dLayer(cin, cout, kernel: 1, generator: &generator),
            BatchNormLayer(cout, affine: affine),
        ])
    }

    /// Each (ReLU,) depthwise and 1x1 pair with a stride-1 depthwise convolution runs as one op
    /// per sample (`depthwisePointwise`), the second with the middle BatchNorm and ReLU (op.3,
    /// op.4) applied on the way in (`batchNormReLUDepthwisePointwiseConv2d`); the last BatchNorm
    /// is returned. Without `ctx.fusesOps`, the middle BatchNorm and ReLU run as one op.
    public func beforeBatchNorm(_ x: Variable, relu: Bool, _ ctx: ForwardContext) throws -> (Variable, BatchNormLayer) {
        let l = op.layers
        let bn = l[3] as! BatchNormLayer
        let p = try depthwisePointwise(x, l[1] as! Conv2dLayer, l[2] as! Conv2dLayer, relu: relu, ctx)
        let (depthwise, pointwise) = (l[5] as! Conv2dLayer, l[6] as! Conv2dLayer)
        if fusesDepthwisePointwise(p, depthwise, ctx) {
            let y = try ctx.tape.batchNormReLUDepthwisePointwiseConv2d(p, batchNorm: bn.application(ctx), depthwise: depthwise.weight,
                                                                        pointwise: pointwise.weight, padding: depthwise.padding.0,
                                                                        dilation: depthwise.dilation)
            return (y, l[7] as! BatchNormLayer)
        }
        let a = try ctx.tape.batchNormReLU(p, gamma: bn.gamma, beta: bn.beta, statistics: bn.statistics, training: ctx.training,
                                           updateStatistics: ctx.updateStatistics, reducer: ctx.statisticsReducer)
        let y = try depthwisePointwise(a, depthwise, pointwise, relu: false, ctx)
        // Not kept: the depthwise convolution's backward recomputes it from p, which BatchNorm keeps.
        ctx.tape.release(a)
        return (y, l[7] as! BatchNormLayer)
    }
    public func collect(prefix: String, into state: inout NamedState) { op.collect(prefix: qualified(prefix, "op"), into: &state) }
}

/// Halves the resolution without losing half the pixels: ReLU, two 1x1 stride-2 convolutions to
/// cout/2 channels each, the second on the input shifted by one pixel, concatenated, BatchNorm.
public final class FactorizedReduce: ReLUPrefixed {
    public let conv1: Conv2dLayer
    public let conv2: Conv2dLayer
    public let bn: BatchNormLayer

    public init(_ cin: Int, _ cout: Int, affine: Bool, generator: inout RandomGenerator) {
        precondition(cout % 2 == 0, "FactorizedReduce needs an even number of output channels, got \(cout)")
        conv1 = Conv2dLayer(cin, cout / 2, kernel: 1, stride: 2, generator: &generator)
        conv2 = Conv2dLayer(cin, cout / 2, kernel: 1, stride: 2, generator: &generator)
        bn = BatchNormLayer(cout, affine: affine)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        try forward(activated: ctx.tape.relu(x), ctx)
    }

    public func forward(activated h: Variable, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        let (H, W) = (h.shape[2], h.shape[3])
        guard H % 2 == 0, W % 2 == 0 else {
            throw KernelError.shapeMismatch(op: "FactorizedReduce",
                                            "input \(h.shape) has an odd size; reduction needs even heights and widths")
        }
        guard ctx.fusesOps else {
            let a = try conv1.forward(h, ctx)
            let b = try conv2.forward(try t.crop(h, top: 1, left: 1, height: H - 1, width: W - 1), ctx)
            let ab = try t.concatChannels([a, b])
            t.release(a); t.release(b)  // read by the concatenation alone
            return try bn.forward(ab, ctx)
        }
        // The same values as the layers above, to the bit, without the crop's and the
        // concatenation's copies (`Tape.factorizedReduce`).
        return try bn.forward(try t.factorizedReduce(h, conv1.weight, conv2.weight), ctx)
    }

    public func collect(prefix: String, into state: inout NamedState) {
        conv1.collect(prefix: qualified(prefix, "conv_1"), into: &state)
        conv2.collect(prefix: qualified(prefix, "conv_2"), into: &state)
        bn.collect(prefix: qualified(prefix, "bn"), into: &state)
    }
}

/// ReLU, a 1x7 convolution with stride (1, s) and padding (0, 3), a 7x1 convolution with stride
/// (s, 1) and padding (3, 0), BatchNorm (the reference `conv_7x1_1x7`, an `nn.Sequential` of its
/// own: children directly under the op's name, `_ops.k.1.weight`, with no `op.` level).
public final class Conv7x1And1x7: ReLUPrefixed {
    public let op: Sequential

    public init(_ c: Int, stride: Int, affine: Bool, generator: inout RandomGenerator) {
        op = Sequential([
            ReLULayer(),
            Conv2dLayer(c, c, kernel: (1, 7), stride: (1, stride), padding: (0, 3), generator: &generator),
            Conv2dLayer(c, c, kernel: (7, 1), stride: (stride, 1), padding: (3, 0), generator: &generator),
            BatchNormLayer(c, affine: affine),
        ])
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable { try op.forward(x, ctx) }
    public func forward(activated h: Variable, _ ctx: ForwardContext) throws -> Variable { try op.forwardAfterReLU(h, ctx) }
    public func collect(prefix: String, into state: inout NamedState) { op.collect(prefix: prefix, into: &state) }
}

/// The identity (skip_connect at stride 1).
public final class Identity: Layer {
    public init() {}
    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable { x }
    public func collect(prefix: String, into state: inout NamedState) {}
}

/// Pooling, then a non-affine BatchNorm: the search network's pooling ops (the reference's
/// `nn.Sequential(pool, nn.BatchNorm2d(C, affine=False))`, hence the children `0` and `1`).
public final class PoolBatchNorm: Layer {
    public let pool: PoolLayer
    public let bn: BatchNormLayer

    public init(_ pool: PoolLayer, channels c: Int) {
        self.pool = pool
        bn = BatchNormLayer(c, affine: false)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        let (y, bn) = try beforeBatchNorm(x, ctx)
        return try bn.forward(y, ctx)
    }

    /// The pooled input before the BatchNorm, and the BatchNorm (a mixed edge applies it inside
    /// its weighted sum, as it does an `EndsWithBatchNorm` op's).
    public func beforeBatchNorm(_ x: Variable, _ ctx: ForwardContext) throws -> (Variable, BatchNormLayer) {
        (try pool.forward(x, ctx), bn)
    }

    public func collect(prefix: String, into state: inout NamedState) {
        pool.collect(prefix: qualified(prefix, "0"), into: &state)
        bn.collect(prefix: qualified(prefix, "1"), into: &state)
    }
}

/// The op registry: builds the op for a primitive on C channels, as the reference `OPS` table
/// (every entry of it: the DARTS eight plus sep_conv_7x7 and conv_7x1_1x7). Returns nil for
/// `none`, whose output is zero: a mixed edge skips it (its weight then gets zero gradient, as
/// in the reference, where it multiplies a zero tensor).
///
/// - Parameter poolBatchNorm: append a non-affine BatchNorm after pooling (the search network's
///   MixedOp does; the evaluation network does not).
public func makeOperation(_ p: Primitive, channels c: Int, stride: Int, affine: Bool, poolBatchNorm: Bool,
                          generator: inout RandomGenerator) -> Layer? {
    switch p {
    case .none:
        return nil
    case .maxPool3x3, .avgPool3x3:
        let pool = PoolLayer(p == .maxPool3x3 ? .max : .average, stride: stride)
        return poolBatchNorm ? PoolBatchNorm(pool, channels: c) : pool
    case .skipConnect:
        return stride == 1 ? Identity() : FactorizedReduce(c, c, affine: affine, generator: &generator)
    case .sepConv3x3:
        return SepConv(c, c, kernel: 3, stride: stride, padding: 1, affine: affine, generator: &generator)
    case .sepConv5x5:
        return SepConv(c, c, kernel: 5, stride: stride, padding: 2, affine: affine, generator: &generator)
    case .sepConv7x7:
        return SepConv(c, c, kernel: 7, stride: stride, padding: 3, affine: affine, generator: &generator)
    case .conv7x1_1x7:
        return Conv7x1And1x7(c, stride: stride, affine: affine, generator: &generator)
    case .dilConv3x3:
        return DilConv(c, c, kernel: 3, stride: stride, padding: 2, dilation: 2, affine: affine, generator: &generator)
    case .dilConv5x5:
        return DilConv(c, c, kernel: 5, stride: stride, padding: 4, dilation: 2, affine: affine, generator: &generator)
    }
}
