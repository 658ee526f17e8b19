import Foundation
import Kernels

/// The ENAS micro-search controller: an LSTM that emits every decision of a DARTS genotype.
///
/// Pham et al. 2018, "Efficient Neural Architecture Search via Parameter Sharing" (ENAS), §2.3,
/// and its reference `micro_controller.py`. One LSTM layer of `hiddenSize` (64) units runs one
/// step per decision; its input is the embedding of the previous decision. For each cell (normal,
/// then reduce) and each of its `steps` nodes the decisions come in ENAS's order
///
///     input 1, input 2, op 1, op 2
///
/// and the node's edges are (op 1, input 1), (op 2, input 2). 2 cells x 4 nodes x 4 = 32
/// decisions; the state carries over from the normal cell to the reduce cell, and each cell starts
/// from a learned start embedding (ENAS's `g_emb`).
///
/// Logits, as ENAS: `tanhConstant * tanh(l)` (1.1) for inputs and
/// `tanhConstant / opTanhReduce * tanh(l)` (1.1 / 2.5) for ops.
///
/// Deviations from ENAS, both to fit this genotype space:
/// - Inputs are chosen by a linear head over the hidden state with one logit per possible input
///   (0...steps), restricted to the inputs node k may use (0...k+1), instead of ENAS's attention
///   over the nodes' anchors.
/// - A node's two inputs differ: the second pick is drawn with the first one masked out (ENAS
///   allows the same input twice; the DARTS genotype space here does not).
///
/// A decision is stored as an index: an input's node number, or an op's position in `operations`.
/// Embedding rows: 0 the start, 1 + i input i, 1 + (steps + 1) + j op j.
public final class ControllerLSTM {
    /// The ops an edge may take: the DARTS search space without `none`, in its order.
    public static let operations: [Primitive] = Primitive.darts.filter { $0 != .none }

    /// Intermediate nodes per cell.
    public let steps: Int
    /// Logit scale of input decisions (ENAS `tanh_constant`).
    public let tanhConstant: Float
    /// Op logits are scaled by `tanhConstant / opTanhReduce` (ENAS `op_tanh_reduce`).
    public let opTanhReduce: Float

    public let lstm: LSTMCell
    /// [1 + (steps + 1) + operations.count, H]: the previous decision's embedding, the LSTM's input.
    public let embedding: Variable
    /// [steps + 1, H] and [steps + 1]: one logit per possible input.
    public let inputWeight: Variable, inputBias: Variable
    /// [operations.count, H] and [operations.count].
    public let opWeight: Variable, opBias: Variable

    /// The size of the LSTM's hidden state (and of the embeddings).
    public var hiddenSize: Int { lstm.hiddenSize }
    /// Every trainable variable, in a fixed order (the order of `init(..., parameters:)`).
    public var parameters: [Variable] { lstm.parameters + [embedding, inputWeight, inputBias, opWeight, opBias] }
    /// Decisions per genotype: 4 per node, both cells.
    public var decisionCount: Int { 2 * steps * 4 }

    /// A controller with ENAS's initialisation: every weight uniform in ±0.1.
    public convenience init(steps: Int = 4, hiddenSize: Int = 64, tanhConstant: Float = 1.1, opTanhReduce: Float = 2.5,
                            generator: inout RandomGenerator) throws {
        let shapes = Self.parameterShapes(steps: steps, hiddenSize: hiddenSize)
        let values = shapes.map { shape -> Tensor in
            var t = Tensor(shape: shape)
            generator.fillUniform(&t, -0.1, 0.1)
            return t
        }
        try self.init(steps: steps, tanhConstant: tanhConstant, opTanhReduce: opTanhReduce, parameters: values)
    }

    /// A controller over existing weights, in the order of `parameters`.
    public init(steps: Int, tanhConstant: Float = 1.1, opTanhReduce: Float = 2.5, parameters values: [Tensor]) throws {
        guard steps >= 1 else { throw ControllerError("a cell needs at least one node, got steps = \(steps)") }
        guard tanhConstant > 0, opTanhReduce > 0 else {
            throw ControllerError("tanh constant \(tanhConstant) and op tanh reduce \(opTanhReduce) must be positive")
        }
        let hiddenSize = values.count == 7 && values[1].rank == 1 ? values[1].shape[0] / 4 : 0
        let expected = Self.parameterShapes(steps: steps, hiddenSize: hiddenSize)
        guard hiddenSize > 0, values.map(\.shape) == expected else {
            throw ControllerError("controller weights have shapes \(values.map(\.shape)); a controller of \(steps) nodes per cell needs [4H, 2H], [4H], [\(2 + steps + Self.operations.count), H], [\(steps + 1), H], [\(steps + 1)], [\(Self.operations.count), H], [\(Self.operations.count)]")
        }
        self.steps = steps
        self.tanhConstant = tanhConstant
        self.opTanhReduce = opTanhReduce
        lstm = try LSTMCell(weight: values[0], bias: values[1])
        func leaf(_ i: Int, _ name: String) -> Variable { Variable(values[i], requiresGrad: true, name: name) }
        embedding = leaf(2, "embedding")
        inputWeight = leaf(3, "input_head.weight")
        inputBias = leaf(4, "input_head.bias")
        opWeight = leaf(5, "op_head.weight")
        opBias = leaf(6, "op_head.bias")
    }

    /// The shapes of `parameters` for `steps` nodes per cell and `hiddenSize` units.
    public static func parameterShapes(steps: Int, hiddenSize h: Int) -> [[Int]] {
        let ops = operations.count
        return [[4 * h, 2 * h], [4 * h], [2 + steps + ops, h], [steps + 1, h], [steps + 1], [ops, h], [ops]]
    }

    /// A copy with its own weights.
    public func copy() throws -> ControllerLSTM {
        try ControllerLSTM(steps: steps, tanhConstant: tanhConstant, opTanhReduce: opTanhReduce, parameters: parameters.map(\.value))
    }

    // MARK: Sampling and scoring

    /// A sampled genotype with its decisions and, on the tape it was drawn on, the sum of the
    /// decisions' log-probabilities and of their distributions' entropies (scalars []).
    public struct Sample {
        public var genotype: Genotype
        public var decisions: [Int]
        public var logProbability: Variable
        public var entropy: Variable
    }

    /// Draws a genotype. On a recording tape, `logProbability` and `entropy` can be
    /// backpropagated to `parameters`; by default nothing is recorded.
    public func sample(using generator: inout RandomGenerator, on tape: Tape = Tape(recording: false)) throws -> Sample {
        var decisions: [Int] = []
        let (logP, entropy) = try unroll(on: tape) { allowed, logits in
            // Inverse-CDF draw from softmax(logits); the last choice takes any rounding remainder.
            let mx = logits.max()!
            let weights = logits.map { Double(expf($0 - mx)) }
            var u = Double(generator.uniform()) * weights.reduce(0, +)
            var pick = weights.count - 1
            for (j, w) in weights.enumerated() {
                if u < w { pick = j; break }
                u -= w
            }
            decisions.append(allowed[pick])
            return pick
        }
        return Sample(genotype: try genotype(of: decisions), decisions: decisions, logProbability: logP, entropy: entropy)
    }

    /// The log-probability of `decisions` (teacher forcing) and the summed entropies of the
    /// distributions they were drawn from, under the current weights (scalars []).
    public func score(_ decisions: [Int], on tape: Tape) throws -> (logProbability: Variable, entropy: Variable) {
        _ = try genotype(of: decisions)
        var position = 0
        return try unroll(on: tape) { allowed, _ in
            defer { position += 1 }
            return allowed.firstIndex(of: decisions[position])!
        }
    }

    /// Runs the LSTM over all decisions; `choose` gets the allowed choices and their (masked,
    /// scaled) logits and returns the position of the pick among them.
    private func unroll(on tape: Tape, _ choose: (_ allowed: [Int], _ logits: [Float]) throws -> Int) throws -> (Variable, Variable) {
        let opBase = 1 + (steps + 1)
        let allOps = Array(0..<Self.operations.count)
        var state = LSTMState.zeros(batch: 1, hiddenSize: hiddenSize)
        var negativeLogPs: [Variable] = []
        var entropies: [Variable] = []
        negativeLogPs.reserveCapacity(decisionCount)
        entropies.reserveCapacity(decisionCount)
        for _ in 0..<2 {
            var previous = 0  // each cell starts from the start embedding
            for node in 0..<steps {
                var firstInput = -1
                for slot in 0..<4 {
                    state = try lstm(try tape.embedding(embedding, indices: [previous]), state, on: tape)
                    let isInput = slot < 2
                    let raw = try tape.linear(state.hidden, isInput ? inputWeight : opWeight, bias: isInput ? inputBias : opBias)
                    let logits = tape.scale(tape.tanh(raw), isInput ? tanhConstant : tanhConstant / opTanhReduce)
                    let allowed = isInput ? (0..<(node + 2)).filter { $0 != firstInput } : allOps
                    let masked = allowed.count == logits.shape[1] ? logits : try tape.gatherColumns(logits, allowed)
                    let pick = try choose(allowed, masked.value.scalars)
                    negativeLogPs.append(try tape.crossEntropy(masked, labels: [pick]))
                    entropies.append(try tape.reshape(try tape.softmaxEntropy(masked), []))
                    if isInput {
                        if slot == 0 { firstInput = allowed[pick] }
                        previous = 1 + allowed[pick]
                    } else {
                        previous = opBase + pick
                    }
                }
            }
        }
        return (tape.scale(try tape.sum(negativeLogPs), -1), try tape.sum(entropies))
    }

    // MARK: Decisions and genotypes

    /// The genotype that `decisions` spell (ENAS order per node: input 1, input 2, op 1, op 2).
    /// - Throws: `ControllerError` for a wrong count, an input out of range, equal inputs of one
    ///   node or an op index out of range.
    public func genotype(of decisions: [Int]) throws -> Genotype {
        guard decisions.count == decisionCount else {
            throw ControllerError("\(decisions.count) decisions; a genotype of \(steps) nodes per cell has \(decisionCount)")
        }
        var cells: [[Genotype.Edge]] = [[], []]
        for cell in 0..<2 {
            for node in 0..<steps {
                let k = (cell * steps + node) * 4
                let (a, b, opA, opB) = (decisions[k], decisions[k + 1], decisions[k + 2], decisions[k + 3])
                guard (0..<(node + 2)).contains(a), (0..<(node + 2)).contains(b), a != b else {
                    throw ControllerError("node \(node + 2) of cell \(cell) has inputs \(a), \(b); they must differ and lie in 0...\(node + 1)")
                }
                guard Self.operations.indices.contains(opA), Self.operations.indices.contains(opB) else {
                    throw ControllerError("node \(node + 2) of cell \(cell) has op indices \(opA), \(opB); valid: 0..<\(Self.operations.count)")
                }
                cells[cell] += [Genotype.Edge(Self.operations[opA], a), Genotype.Edge(Self.operations[opB], b)]
            }
        }
        let concat = Array(2..<(steps + 2))
        return try Genotype(normal: cells[0], normalConcat: concat, reduce: cells[1], reduceConcat: concat)
    }

    /// The decisions that spell `genotype` (the inverse of `genotype(of:)`).
    /// - Throws: `ControllerError` when the genotype lies outside this controller's space.
    public func decisions(of genotype: Genotype) throws -> [Int] {
        let concat = Array(2..<(steps + 2))
        guard genotype.steps == steps, genotype.normalConcat == concat, genotype.reduceConcat == concat else {
            throw ControllerError("genotype with \(genotype.steps) nodes and concat \(genotype.normalConcat), \(genotype.reduceConcat) is outside the controller's space (\(steps) nodes, concat \(concat))")
        }
        var out: [Int] = []
        for edges in [genotype.normal, genotype.reduce] {
            for node in 0..<steps {
                let (e1, e2) = (edges[2 * node], edges[2 * node + 1])
                guard let o1 = Self.operations.firstIndex(of: e1.op), let o2 = Self.operations.firstIndex(of: e2.op) else {
                    throw ControllerError("op '\(e1.op.name)' or '\(e2.op.name)' is not one of \(Self.operations.map(\.name))")
                }
                out += [e1.input, e2.input, o1, o2]
            }
        }
        _ = try self.genotype(of: out)  // checks distinct inputs
        return out
    }
}

// MARK: Codable: the configuration and the weights (exact bits)

extension ControllerLSTM: Codable {
    private enum CodingKeys: String, CodingKey { case steps, tanhConstant, opTanhReduce, parameters }

    public convenience init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let stored = try c.decode([Base64Tensor].self, forKey: .parameters)
        try self.init(steps: try c.decode(Int.self, forKey: .steps),
                      tanhConstant: try c.decode(Float.self, forKey: .tanhConstant),
                      opTanhReduce: try c.decode(Float.self, forKey: .opTanhReduce),
                      parameters: try stored.enumerated().map { try $1.tensor("controller parameter \($0)") })
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(steps, forKey: .steps)
        try c.encode(tanhConstant, forKey: .tanhConstant)
        try c.encode(opTanhReduce, forKey: .opTanhReduce)
        try c.encode(parameters.map { Base64Tensor($0.value) }, forKey: .parameters)
    }
}

/// A controller given weights, decisions or a genotype that do not fit its space.
public struct ControllerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
