import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// `--op-dropout`: parsing and validation, dropout only on the named ops (the identity only at
/// stride 1), only in the weight step, deterministic masks, P-DARTS's skip rate combined with it,
/// and the configuration's round trip.
final class OpDropoutTests: XCTestCase {
    private let ops: [Primitive] = [.none, .maxPool3x3, .avgPool3x3, .skipConnect, .sepConv3x3]

    private func config(_ text: String?, method: SearchMethodKind = .darts) throws -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.method = method
        c.channels = 4
        c.layers = 3
        c.epochs = 2
        c.primitives = ops
        c.opDropout = try text.map { try OpDropoutRates(parsing: $0) }
        return c
    }

    private func make(_ c: SearchConfig) throws -> SearchMethod {
        try c.method.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
    }

    private func batch(seed: UInt64 = 4) throws -> Batch {
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: seed)
        var g = RandomGenerator(seed: 1)
        return data.batch(Array(0..<8), augment: false, generator: &g)
    }

    func testRatesAreParsedAndCheckedWithMessagesNamingTheFlag() throws {
        let r = try OpDropoutRates(parsing: "skip_connect=0.3, max_pool_3x3=0.1")
        XCTAssertEqual(r.rates, ["skip_connect": 0.3, "max_pool_3x3": 0.1])
        XCTAssertEqual(r.resolved(over: ops), [.skipConnect: 0.3, .maxPool3x3: 0.1])
        // all: every op but none; named entries override it, 0 switches an op off.
        XCTAssertEqual(try OpDropoutRates(parsing: "all=0.1,skip_connect=0").resolved(over: ops),
                       [.maxPool3x3: 0.1, .avgPool3x3: 0.1, .sepConv3x3: 0.1])
        for (text, message) in [("foo=0.1", "unknown operation 'foo'"), ("skip_connect=1", "[0, 1)"), ("skip_connect=-0.1", "[0, 1)"),
                                ("skip_connect", "cannot read"), ("skip_connect=x", "cannot read"), ("", "cannot read"),
                                ("none=0.1", "none has no output"), ("all=0.1,all=0.2", "given twice"), ("skip_connect=nan", "[0, 1)")] {
            XCTAssertThrowsError(try OpDropoutRates(parsing: text), text) {
                XCTAssertTrue("\($0)".hasPrefix("--op-dropout") && "\($0)".contains(message), "\(text): \($0)")
            }
        }
        func message(_ c: SearchConfig) -> String {
            do { try c.validate(); return "" } catch { return "\(error)" }
        }
        XCTAssertEqual(message(try config("all=0.2")), "")
        XCTAssertTrue(message(try config("dil_conv_3x3=0.2")).contains("not in the search space"))
        XCTAssertTrue(message(try config("all=0.2", method: .pcDarts)).contains("pc-darts"))
        var p = try config("skip_connect=0.2", method: .pdarts)
        p.epochs = 4
        p.warmupEpochs = 1
        p.pdarts = PDARTSSettings(stages: [3, 4], stageOps: [5, 2], skipDropout: [0, 0.2], maxSkipConnections: 1)
        XCTAssertTrue(message(p).contains("--skip-dropout"))
        p.opDropout = try OpDropoutRates(parsing: "max_pool_3x3=0.2")
        XCTAssertEqual(message(p), "")
    }

    func testOnlyTheNamedOpsAreDroppedTheSkipOnlyWhereItIsTheIdentity() throws {
        let m = try make(try config("skip_connect=0.5,max_pool_3x3=0.5"))
        let dropout = try XCTUnwrap(m.training.opDropout)
        let normal = try XCTUnwrap(m.network.cells.first { !$0.reduction }?.edges[0] as? OpDropoutEdge)
        let strided = try XCTUnwrap(m.network.cells.first { $0.reduction }?.edges[0] as? OpDropoutEdge)
        XCTAssertNil(strided.identityIndex, "a stride-2 skip is a FactorizedReduce")
        func output(_ edge: OpDropoutEdge, op: Int, x: Variable, training: Bool = true, active: Bool = true, step: Int = 0) throws -> Tensor {
            var onehot = Tensor(shape: [ops.count]); onehot.scalars[op] = 1
            let run = { try edge.forward(x, weights: Variable(onehot), ForwardContext(tape: Tape(recording: false), training: training)).value }
            return active ? try m.training.withOpDropout(epoch: 1, step: step, run) : try run()
        }
        let x = Variable(randomTensor([2, 4, 8, 8], seed: 2))
        func dropsHalf(_ y: Tensor, _ plain: Tensor, _ what: String) {
            let zeros = zip(y.scalars, plain.scalars).filter { $0.0 == 0 && $0.1 != 0 }.count
            XCTAssertGreaterThan(zeros, y.count / 4, what)
            XCTAssertLessThan(zeros, 3 * y.count / 4, what)
            for (a, b) in zip(y.scalars, plain.scalars) where a != 0 { XCTAssertEqual(a, 2 * b, accuracy: 1e-5, what) }
        }
        // Stride 1: skip (3) and max pool (1) dropped; avg pool (2) and sep conv (4) untouched.
        for k in [1, 3] { dropsHalf(try output(normal, op: k, x: x), try output(normal, op: k, x: x, active: false), "op \(k)") }
        for k in [2, 4] { XCTAssertEqual(try output(normal, op: k, x: x), try output(normal, op: k, x: x, active: false), "op \(k)") }
        // Evaluation and the time outside a weight step: nothing dropped.
        XCTAssertEqual(try output(normal, op: 3, x: x, training: false), x.value)
        XCTAssertFalse(dropout.active)
        XCTAssertEqual(try output(normal, op: 3, x: x, active: false), x.value)
        // Stride 2: the max pool is dropped, the skip (FactorizedReduce) is not.
        let xs = Variable(randomTensor([2, 8, 8, 8], seed: 3))
        dropsHalf(try output(strided, op: 1, x: xs), try output(strided, op: 1, x: xs, active: false), "stride-2 max pool")
        XCTAssertEqual(try output(strided, op: 3, x: xs), try output(strided, op: 3, x: xs, active: false))
        // Masks: a function of (seed, epoch, step, edge).
        XCTAssertEqual(try output(normal, op: 3, x: x), try output(normal, op: 3, x: x))
        XCTAssertNotEqual(try output(normal, op: 3, x: x, step: 1), try output(normal, op: 3, x: x))
        // The gradient through a dropped skip is the mask: 0 or 1/(1-p).
        var onehot = Tensor(shape: [ops.count]); onehot.scalars[3] = 1
        let xg = Variable(x.value, requiresGrad: true)
        let tape = Tape()
        let y = try m.training.withOpDropout(epoch: 1, step: 0) {
            try normal.forward(xg, weights: Variable(onehot), ForwardContext(tape: tape, training: true))
        }
        try tape.backward(tape.sumAll(y))
        let grad = try XCTUnwrap(xg.grad)
        XCTAssertEqual(grad.scalars.map { $0 == 0 }, y.value.scalars.map { $0 == 0 })
        XCTAssertTrue(grad.scalars.allSatisfy { $0 == 0 || $0 == 2 })
    }

    func testDropoutActsInTheWeightStepOnlyAndIsDeterministic() throws {
        // The architecture step comes first on identical supernets: the same loss with and without
        // dropout shows it sees no dropout; the weight step's loss differs.
        let plain = try make(try config(nil))
        let a = try make(try config("all=0.5"))
        let b = try make(try config("all=0.5"))
        XCTAssertTrue(plain.network.cells[0].edges[0] is MixedOp, "no dropout: the plain DARTS edge")
        let (train, validation) = (try batch(), try batch(seed: 5))
        let control = StepControl()
        let rp = try plain.step(train: train, validation: validation, epoch: 1, learningRate: 0.01, control: control)
        let ra = try a.step(train: train, validation: validation, epoch: 1, learningRate: 0.01, control: control)
        let rb = try b.step(train: train, validation: validation, epoch: 1, learningRate: 0.01, control: control)
        XCTAssertEqual(try XCTUnwrap(ra.architectureLoss), try XCTUnwrap(rp.architectureLoss))
        XCTAssertNotEqual(ra.loss, rp.loss)
        XCTAssertEqual(ra.loss, rb.loss)
        for (x, y) in zip(a.network.weights, b.network.weights) { XCTAssertEqual(x.value, y.value, x.name) }
        XCTAssertFalse(try XCTUnwrap(a.training.opDropout).active)
        // The same for the other methods with full mixed edges.
        for method in [SearchMethodKind.sdarts, .dartsMinus] {
            let m = try make(try config("max_pool_3x3=0.3", method: method))
            XCTAssertEqual(m.training.opDropoutRates, [.maxPool3x3: 0.3], "\(method)")
            _ = try m.step(train: train, validation: validation, epoch: 1, learningRate: 0.01, control: control)
        }
    }

    func testPDARTSKeepsItsScheduledSkipRateAndAddsTheOtherOps() throws {
        var c = try config("all=0.2", method: .pdarts)
        c.epochs = 4
        c.warmupEpochs = 1
        c.pdarts = PDARTSSettings(stages: [3, 4], stageOps: [5, 2], skipDropout: [0.4, 0.6], maxSkipConnections: 1)
        let m = try XCTUnwrap(try make(c) as? PDARTS)
        XCTAssertEqual(m.training.opDropoutRates, [.maxPool3x3: 0.2, .avgPool3x3: 0.2, .sepConv3x3: 0.2],
                       "the skip connection's rate is P-DARTS's")
        let dropout = m.skipDropout
        XCTAssertTrue(m.training.opDropout === dropout)
        try dropout.during(rate: 0.4, epoch: 1, step: 0) {
            try m.training.withOpDropout(epoch: 1, step: 0) {
                XCTAssertEqual(dropout.rates, [.skipConnect: 0.4, .maxPool3x3: 0.2, .avgPool3x3: 0.2, .sepConv3x3: 0.2])
            }
            XCTAssertEqual(dropout.rates, [.skipConnect: 0.4], "the inner rates are removed when the weight step ends")
        }
        XCTAssertFalse(dropout.active)
    }

    func testConfigurationRoundTripsAndOlderConfigurationsRead() throws {
        let c = try config("skip_connect=0.3,all=0.1")
        let data = try JSONEncoder().encode(c)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("\"all=0.1,skip_connect=0.3\""))
        XCTAssertEqual(try JSONDecoder().decode(SearchConfig.self, from: data), c)
        // A configuration written before the field existed reads as no dropout.
        var object = try JSONDecoder().decode([String: JSONValue].self, from: data)
        object["opDropout"] = nil
        let old = try JSONDecoder().decode(SearchConfig.self, from: try JSONEncoder().encode(object))
        XCTAssertNil(old.opDropout)
        // Checkpoints hold the same tensors with and without dropout (MixedOp's names).
        var withDropout = CheckpointFile(metadata: [:]), without = CheckpointFile(metadata: [:])
        try make(c).addState(to: &withDropout)
        try make(try config(nil)).addState(to: &without)
        XCTAssertEqual(withDropout.tensors.map(\.name), without.tensors.map(\.name))
    }
}
