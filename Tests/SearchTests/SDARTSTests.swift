import Distributed
import Kernels
import Search
import XCTest
import _TestSupport

/// SDARTS-RS: the perturbation, its schedule, and that only the weight step sees it.
final class SDARTSTests: XCTestCase {
    private func config(_ method: SearchMethodKind = .sdarts) -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.method = method
        c.channels = 4
        c.layers = 3
        c.epochs = 4
        return c
    }

    private func make(_ c: SearchConfig) throws -> SearchMethod {
        try c.method.make(c, inputShape: [1, 8, 8], classes: 3, averager: GradientAverager(LocalCommunicator()))
    }

    private func batch() throws -> Batch {
        let data = try SyntheticDataset.make(count: 8, imageShape: [1, 8, 8], classes: 3, seed: 4)
        var g = RandomGenerator(seed: 1)
        return data.batch(Array(0..<8), augment: false, generator: &g)
    }

    func testEpsilonRisesLinearlyFromThePaperValues() throws {
        let s = PerturbationSchedule.sdartsDefault
        XCTAssertEqual(s.epsilon(epoch: 0, epochs: 50), 0.03)
        XCTAssertEqual(s.epsilon(epoch: 25, epochs: 50), 0.165, accuracy: 1e-6)
        XCTAssertEqual(s.epsilon(epoch: 50, epochs: 50), 0.3, accuracy: 1e-6)
        XCTAssertEqual(PerturbationSchedule(parsing: "0.1:0.5"), PerturbationSchedule(start: 0.1, end: 0.5))
        XCTAssertEqual(PerturbationSchedule(parsing: "0.2"), PerturbationSchedule(start: 0.03, end: 0.2))
        XCTAssertNil(PerturbationSchedule(parsing: "a:b"))
        XCTAssertNil(PerturbationSchedule(parsing: "0.1:0.2:0.3"))
        // Only for sdarts; non-negative.
        var c = config(.darts)
        c.sdartsEpsilon = PerturbationSchedule(start: 0.1, end: 0.2)
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--sdarts-epsilon applies to --method sdarts"), "\($0)") }
        c.method = .sdarts
        XCTAssertNoThrow(try c.validate())
        c.sdartsEpsilon = PerturbationSchedule(start: -0.1, end: 0.2)
        XCTAssertThrowsError(try c.validate())
    }

    func testPerturbedRowsLieInTheUnitIntervalAndSumToOne() throws {
        let w = try Tape(recording: false).softmax(Variable(randomTensor([14, 8], seed: 3))).value
        for epsilon: Float in [0.03, 0.3, 2] {
            var g = RandomGenerator(seed: 5)
            let p = SDARTS.perturb(w, epsilon: epsilon, generator: &g)
            XCTAssertEqual(p.shape, [14, 8])
            XCTAssertNotEqual(p, w)
            XCTAssertTrue(p.scalars.allSatisfy { $0 >= 0 && $0 <= 1 }, "eps \(epsilon)")
            for r in 0..<14 { XCTAssertEqual(p.scalars[(r * 8)..<(r * 8 + 8)].reduce(0, +), 1, accuracy: 1e-5, "eps \(epsilon) row \(r)") }
        }
        // A row clipped to all zeros puts its weight on one op.
        var g = RandomGenerator(seed: 5)
        let zero = SDARTS.perturb(Tensor(shape: [1, 4]), epsilon: 0, generator: &g)
        XCTAssertEqual(zero.scalars.reduce(0, +), 1)
        XCTAssertEqual(zero.scalars.filter { $0 == 1 }.count, 1)
    }

    func testOnlyTheWeightStepSeesThePerturbation() throws {
        // SDARTS and DARTS from the same seed build the same supernet; one step on the same
        // batches: the architecture step (first) must agree bit for bit, the weight step must not.
        let sdarts = try make(config()), darts = try make(config(.darts))
        XCTAssertEqual(sdarts.network.weights.map(\.value), darts.network.weights.map(\.value))
        let b = try batch()
        _ = try sdarts.step(train: b, validation: b, epoch: 1, learningRate: 0.05, control: StepControl(step: 3))
        _ = try darts.step(train: b, validation: b, epoch: 1, learningRate: 0.05, control: StepControl(step: 3))
        XCTAssertEqual(sdarts.network.architecture.map(\.value), darts.network.architecture.map(\.value),
                       "the architect saw clean op weights")
        XCTAssertNotEqual(sdarts.network.weights.map(\.value), darts.network.weights.map(\.value),
                          "the weight step saw perturbed op weights")
        XCTAssertNil(sdarts.network.opWeightTransform, "the perturbation is removed after the weight step")

        // The architecture gradient itself: the same at the same weights with and without the
        // transform set only during the weight step.
        let s = sdarts as! SDARTS
        let x = randomTensor([4, 1, 8, 8], seed: 1)
        func archGrad(_ transform: ((Variable, Bool, Tape) throws -> Variable)?) throws -> [Tensor?] {
            s.network.opWeightTransform = transform
            defer { s.network.opWeightTransform = nil }
            s.network.architecture.forEach { $0.grad = nil }
            let tape = Tape()
            try tape.backward(try s.network.loss(x, [0, 1, 2, 0], ForwardContext(tape: tape, training: true, updateStatistics: false)).loss)
            return s.network.architecture.map(\.grad)
        }
        let clean = try archGrad(nil)
        XCTAssertTrue(clean.allSatisfy { ($0?.squaredNorm() ?? 0) > 0 })
        XCTAssertEqual(try archGrad(nil), clean)
        // The perturbed weights are constants: no gradient reaches the alphas through them.
        XCTAssertTrue(try archGrad(s.perturbation(epoch: 1, step: 3)).allSatisfy { $0 == nil })
    }

    func testSameSeedGivesIdenticalWeightsAndTheNoiseDependsOnTheStep() throws {
        let b = try batch()
        func run(steps: [Int]) throws -> [Tensor] {
            let m = try make(config())
            for s in steps { _ = try m.step(train: b, validation: b, epoch: 2, learningRate: 0.05, control: StepControl(step: s)) }
            return m.network.weights.map(\.value) + m.network.architecture.map(\.value)
        }
        XCTAssertEqual(try run(steps: [0, 1]), try run(steps: [0, 1]))
        XCTAssertNotEqual(try run(steps: [0, 1]), try run(steps: [0, 5]))
        // The transform is a pure function of (seed, epoch, step, cell type).
        let m = try make(config()) as! SDARTS
        let w = try Tape(recording: false).softmax(Variable(randomTensor([14, 8], seed: 3)))
        let t = Tape(recording: false)
        XCTAssertEqual(try m.perturbation(epoch: 1, step: 2)(w, false, t).value, try m.perturbation(epoch: 1, step: 2)(w, false, t).value)
        XCTAssertNotEqual(try m.perturbation(epoch: 1, step: 2)(w, false, t).value, try m.perturbation(epoch: 1, step: 2)(w, true, t).value)
        XCTAssertNotEqual(try m.perturbation(epoch: 1, step: 2)(w, false, t).value, try m.perturbation(epoch: 2, step: 2)(w, false, t).value)
    }
}
