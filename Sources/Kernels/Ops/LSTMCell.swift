import Foundation

/// One step of a long short-term memory layer (Hochreiter & Schmidhuber 1997), as PyTorch's
/// `nn.LSTMCell`, built from primitives on the tape: one matrix product gives the four gates,
/// which are sliced apart in PyTorch's order input, forget, cell, output:
///
///     [i f g o] = [x, h] Wᵀ + b
///     c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
///     h' = sigmoid(o) * tanh(c')
///
/// W = [W_ih | W_hh] holds PyTorch's `weight_ih` [4H, I] and `weight_hh` [4H, H] side by side,
/// and b = `bias_ih + bias_hh`.

/// The recurrent state of an LSTM layer: hidden h and cell c, each [N, H].
public struct LSTMState {
    public var hidden: Variable
    public var cell: Variable

    public init(hidden: Variable, cell: Variable) {
        self.hidden = hidden
        self.cell = cell
    }

    /// The zero state of a batch of `batch` sequences (constants, no gradient).
    public static func zeros(batch: Int, hiddenSize: Int) -> LSTMState {
        LSTMState(hidden: Variable(Tensor(shape: [batch, hiddenSize])), cell: Variable(Tensor(shape: [batch, hiddenSize])))
    }
}

extension Tape {
    /// One LSTM step. x: [N, I], state: [N, H] each, weight: [4H, I + H], bias: [4H] -> state [N, H].
    public func lstmCell(_ x: Variable, _ state: LSTMState, weight: Variable, bias: Variable) throws -> LSTMState {
        let op = "lstmCell"
        let (h, c) = (state.hidden, state.cell)
        try require(x.shape.count == 2 && h.shape.count == 2 && h.shape == c.shape && h.shape[0] == x.shape[0], op,
                    "input \(x.shape), hidden \(h.shape), cell \(c.shape): expected [N, I], [N, H], [N, H]")
        let (inputSize, hiddenSize) = (x.shape[1], h.shape[1])
        try require(weight.shape == [4 * hiddenSize, inputSize + hiddenSize] && bias.shape == [4 * hiddenSize], op,
                    "weight \(weight.shape), bias \(bias.shape): expected [\(4 * hiddenSize), \(inputSize + hiddenSize)] and [\(4 * hiddenSize)]")
        let gates = try linear(try concatChannels([x, h]), weight, bias: bias)
        func gate(_ k: Int) throws -> Variable { try sliceChannels(gates, (k * hiddenSize)..<((k + 1) * hiddenSize)) }
        let i = sigmoid(try gate(0))
        let f = sigmoid(try gate(1))
        let g = tanh(try gate(2))
        let o = sigmoid(try gate(3))
        let cNext = try add(try multiply(f, c), try multiply(i, g))
        let hNext = try multiply(o, tanh(cNext))
        return LSTMState(hidden: hNext, cell: cNext)
    }
}

/// An LSTM layer's weights, stepped one time step at a time (`nn.LSTMCell`).
public final class LSTMCell {
    /// [4H, I + H]: the gates' weights over the input and the previous hidden state.
    public let weight: Variable
    /// [4H].
    public let bias: Variable

    /// The size I of each input.
    public var inputSize: Int { weight.shape[1] - hiddenSize }
    /// The size H of the hidden and cell states.
    public var hiddenSize: Int { bias.shape[0] / 4 }
    /// Weight, bias.
    public var parameters: [Variable] { [weight, bias] }

    /// A cell initialised as PyTorch does: every weight and bias uniform in ±1/sqrt(H).
    public init(inputSize: Int, hiddenSize: Int = 64, generator: inout RandomGenerator) {
        precondition(inputSize > 0 && hiddenSize > 0, "LSTMCell: sizes must be positive, got \(inputSize), \(hiddenSize)")
        let bound = 1 / Float(hiddenSize).squareRoot()
        var w = Tensor(shape: [4 * hiddenSize, inputSize + hiddenSize])
        var b = Tensor(shape: [4 * hiddenSize])
        generator.fillUniform(&w, -bound, bound)
        generator.fillUniform(&b, -bound, bound)
        weight = Variable(w, requiresGrad: true, name: "weight")
        bias = Variable(b, requiresGrad: true, name: "bias")
    }

    /// A cell over existing weights: weight [4H, I + H], bias [4H].
    public init(weight: Tensor, bias: Tensor) throws {
        try require(weight.rank == 2 && bias.rank == 1 && bias.shape[0] % 4 == 0 && bias.shape[0] > 0
                    && weight.shape[0] == bias.shape[0] && weight.shape[1] > bias.shape[0] / 4, "LSTMCell",
                    "weight \(weight.shape), bias \(bias.shape): expected [4H, I + H] and [4H]")
        self.weight = Variable(weight, requiresGrad: true, name: "weight")
        self.bias = Variable(bias, requiresGrad: true, name: "bias")
    }

    /// One step: x: [N, I], state: [N, H] each -> the next state.
    public func callAsFunction(_ x: Variable, _ state: LSTMState, on tape: Tape) throws -> LSTMState {
        try tape.lstmCell(x, state, weight: weight, bias: bias)
    }
}
