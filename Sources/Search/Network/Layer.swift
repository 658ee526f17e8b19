import Kernels

/// How a forward pass runs: on which tape, in training or evaluation mode.
public struct ForwardContext {
    public let tape: Tape
    /// Training mode: batch statistics in BatchNorm, drop path active.
    public let training: Bool
    /// In training mode, whether BatchNorm updates its running averages.
    public var updateStatistics: Bool
    /// Synchronised BatchNorm: sums batch statistics over ranks (nil: per-rank statistics).
    public var statisticsReducer: StatisticsReducer?
    /// Drop path for the evaluation network (applied in training mode only; nil: none).
    public var dropPath: DropPathSampler?
    /// Whether ops run fused where a fused form exists (the default): the same values to the
    /// bit with fewer passes over memory (a sep_conv's depthwise and 1x1 convolutions per sample,
    /// BatchNorm inside a cell node's sum, a cell output's ReLU inside its concatenation). Off,
    /// every layer runs as its own op, for comparisons.
    public var fusesOps = true

    public init(tape: Tape, training: Bool, updateStatistics: Bool = true, statisticsReducer: StatisticsReducer? = nil,
                dropPath: DropPathSampler? = nil) {
        self.tape = tape
        self.training = training
        self.updateStatistics = updateStatistics
        self.statisticsReducer = statisticsReducer
        self.dropPath = dropPath
    }
}

extension ForwardContext {
    /// The same context on another tape (for a recomputed segment), optionally without running-
    /// statistics updates.
    public func on(_ tape: Tape, updateStatistics: Bool) -> ForwardContext {
        var ctx = ForwardContext(tape: tape, training: training, updateStatistics: self.updateStatistics && updateStatistics,
                                 statisticsReducer: statisticsReducer, dropPath: dropPath)
        ctx.fusesOps = fusesOps
        return ctx
    }
}

/// Drop path's probability for the current epoch and the generator its masks come from.
public final class DropPathSampler {
    public var probability: Float
    public var generator: RandomGenerator

    public init(probability: Float, generator: RandomGenerator) {
        self.probability = probability
        self.generator = generator
    }
}

/// Named parameters and BatchNorm buffers of a network, in registration order, with the names the
/// reference PyTorch modules' `state_dict` uses (`cells.0._ops.3._ops.4.op.1.weight`).
public struct NamedState {
    public var parameters: [(name: String, variable: Variable)] = []
    public var statistics: [(name: String, statistics: BatchNormStatistics)] = []

    public init() {}

    /// The total number of parameter elements.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.variable.value.count } }
}

/// A building block of a network: a forward pass and its named state.
public protocol Layer: AnyObject {
    /// x -> y on the context's tape.
    func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable
    /// Appends this layer's parameters and buffers, names prefixed by `prefix`.
    func collect(prefix: String, into state: inout NamedState)
}

/// `prefix.name`, or `name` when the prefix is empty.
@inline(__always)
func qualified(_ prefix: String, _ name: String) -> String {
    prefix.isEmpty ? name : prefix + "." + name
}

/// A convolution without bias (as every convolution in DARTS), PyTorch default initialisation:
/// uniform in ±1/sqrt(fan_in).
public final class Conv2dLayer: Layer {
    public let weight: Variable
    /// Stride and padding as (height, width).
    public let stride, padding: (Int, Int)
    public let dilation, groups: Int

    public convenience init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                            dilation: Int = 1, groups: Int = 1, generator: inout RandomGenerator) {
        self.init(inChannels, outChannels, kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding),
                  dilation: dilation, groups: groups, generator: &generator)
    }

    /// A kernel, stride and padding given as (height, width), e.g. the reference's 1x7 convolution
    /// with stride (1, s) and padding (0, 3).
    public init(_ inChannels: Int, _ outChannels: Int, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int),
                dilation: Int = 1, groups: Int = 1, generator: inout RandomGenerator) {
        var w = Tensor(shape: [outChannels, inChannels / groups, kernel.0, kernel.1])
        let bound = 1 / Float(inChannels / groups * kernel.0 * kernel.1).squareRoot()
        generator.fillUniform(&w, -bound, bound)
        weight = Variable(w, requiresGrad: true)
        self.stride = stride; self.padding = padding; self.dilation = dilation; self.groups = groups
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        try ctx.tape.conv2d(x, weight, stride: stride, padding: padding, dilation: dilation, groups: groups)
    }

    public func collect(prefix: String, into state: inout NamedState) {
        state.parameters.append((qualified(prefix, "weight"), weight))
    }
}

/// BatchNorm2d with optional affine parameters (gamma = 1, beta = 0 initially).
public final class BatchNormLayer: Layer {
    public let gamma: Variable?
    public let beta: Variable?
    public let statistics: BatchNormStatistics

    public init(_ channels: Int, affine: Bool) {
        gamma = affine ? Variable(Tensor(shape: [channels], repeating: 1), requiresGrad: true) : nil
        beta = affine ? Variable(Tensor(shape: [channels], repeating: 0), requiresGrad: true) : nil
        statistics = BatchNormStatistics(channels: channels)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        try ctx.tape.batchNorm(x, gamma: gamma, beta: beta, statistics: statistics, training: ctx.training,
                               updateStatistics: ctx.updateStatistics, reducer: ctx.statisticsReducer)
    }

    /// This layer as applied in `ctx` (for `Tape.batchNormSum`).
    public func application(_ ctx: ForwardContext) -> BatchNormApplication {
        BatchNormApplication(gamma: gamma, beta: beta, statistics: statistics, training: ctx.training,
                             updateStatistics: ctx.updateStatistics, reducer: ctx.statisticsReducer)
    }

    public func collect(prefix: String, into state: inout NamedState) {
        if let gamma, let beta {
            state.parameters.append((qualified(prefix, "weight"), gamma))
            state.parameters.append((qualified(prefix, "bias"), beta))
        }
        state.statistics.append((prefix, statistics))
    }
}

/// Fully connected layer with bias, PyTorch default initialisation (±1/sqrt(in)).
public final class LinearLayer: Layer {
    public let weight: Variable
    public let bias: Variable

    public init(_ inFeatures: Int, _ outFeatures: Int, generator: inout RandomGenerator) {
        let bound = 1 / Float(inFeatures).squareRoot()
        var w = Tensor(shape: [outFeatures, inFeatures])
        generator.fillUniform(&w, -bound, bound)
        var b = Tensor(shape: [outFeatures])
        generator.fillUniform(&b, -bound, bound)
        weight = Variable(w, requiresGrad: true)
        bias = Variable(b, requiresGrad: true)
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        try ctx.tape.linear(x, weight, bias: bias)
    }

    public func collect(prefix: String, into state: inout NamedState) {
        state.parameters.append((qualified(prefix, "weight"), weight))
        state.parameters.append((qualified(prefix, "bias"), bias))
    }
}

/// ReLU (no state).
public final class ReLULayer: Layer {
    public init() {}
    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable { ctx.tape.relu(x) }
    public func collect(prefix: String, into state: inout NamedState) {}
}

/// 3x3 max or average pooling with padding 1 (average excludes the padding).
public final class PoolLayer: Layer {
    public enum Kind { case max, average }
    public let kind: Kind
    public let stride: Int

    public init(_ kind: Kind, stride: Int) {
        self.kind = kind
        self.stride = stride
    }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        switch kind {
        case .max: return try ctx.tape.maxPool2d(x, kernel: 3, stride: stride, padding: 1)
        case .average: return try ctx.tape.avgPool2d(x, kernel: 3, stride: stride, padding: 1)
        }
    }

    public func collect(prefix: String, into state: inout NamedState) {}
}

/// Layers applied in order, named by index (PyTorch's `nn.Sequential`).
public final class Sequential: Layer {
    public let layers: [Layer]

    public init(_ layers: [Layer]) { self.layers = layers }

    public func forward(_ x: Variable, _ ctx: ForwardContext) throws -> Variable {
        var h = x
        for l in layers { h = try l.forward(h, ctx) }
        return h
    }

    public func collect(prefix: String, into state: inout NamedState) {
        for (i, l) in layers.enumerated() { l.collect(prefix: qualified(prefix, "\(i)"), into: &state) }
    }
}
