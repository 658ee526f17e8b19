import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// The single-path supernet forward, the uniform architecture sampler and random search with
/// weight sharing's step, reward hook and settings.
final class RandomWeightSharingTests: XCTestCase {
    private let supernet = SupernetConfig(channels: 4, layers: 3, inputShape: [1, 8, 8], classes: 3)

    private func batch(count: Int = 6, seed: UInt64 = 4) throws -> Batch {
        let data = try SyntheticDataset.make(count: count, imageShape: [1, 8, 8], classes: 3, seed: seed)
        var g = RandomGenerator(seed: 1)
        return data.batch(Array(0..<count), augment: false, generator: &g)
    }

    private func genotype(seed: UInt64 = 3) throws -> Genotype {
        try UniformArchitectureSampler(seed: seed).sample(epoch: 0, step: 0, draw: 0)
    }

    private func config() -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.method = .randomWS
        c.channels = 4
        c.layers = 3
        return c
    }

    // MARK: Single path

    func testSinglePathEqualsTheSupernetWithOneHotOpWeights() throws {
        let b = try batch()
        for seed: UInt64 in [3, 8, 21] {
            let g = try genotype(seed: seed)
            let net = try SearchNetwork(supernet, seed: 7)
            let path = try SupernetPath(g, space: net.config.space, steps: 4)
            // The reference: the weighted supernet, every op computed, op weights 1 on the chosen
            // ops and 0 elsewhere (training mode: each BatchNorm normalises with its own batch).
            let k = net.config.space.opsPerEdge
            net.opWeightTransform = { _, reduction, _ in
                Variable(try Tensor(shape: [14, k], scalars: path.oneHotWeights(reduction: reduction, opsPerEdge: k)))
            }
            let weighted = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
            net.opWeightTransform = nil
            net.path = path
            let single = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
            XCTAssertEqual(single.shape, [6, 3])
            assertClose(single.value.scalars, weighted.value.scalars, tolerance: 1e-5)
            net.path = nil
            let mixed = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
            XCTAssertNotEqual(mixed.value.scalars, single.value.scalars, "the mixed supernet is another function")
        }
    }

    func testOpsOffThePathGetNoGradientAndNoUpdate() throws {
        let g = try genotype()
        let net = try SearchNetwork(supernet, seed: 7)
        let path = try SupernetPath(g, space: net.config.space, steps: 4)
        net.path = path
        let tape = Tape()
        let b = try batch()
        try tape.backward(try net.loss(b.images, b.labels, ForwardContext(tape: tape, training: true)).loss)
        var onPath = 0
        for (name, v) in net.state.parameters {
            // cells.<i>._ops.<edge>._ops.<op>....
            let parts = name.split(separator: ".")
            guard parts.count > 5, parts[0] == "cells", parts[2] == "_ops", let cell = Int(parts[1]), let edge = Int(parts[3]),
                  let op = Int(parts[5]) else { continue }
            let chosen = path.edges(reduction: net.cells[cell].reduction)[edge] == op
            if chosen { onPath += 1 }
            XCTAssertEqual(v.grad != nil, chosen, name)
        }
        XCTAssertGreaterThan(onPath, 0, "the sample has ops with weights")
        XCTAssertTrue(net.architecture.allSatisfy { $0.grad == nil }, "no architecture weights on a path's tape")

        // The method's weight step changes the path's weights only.
        let method = try RandomWeightSharing(config(), inputShape: [1, 8, 8], classes: 3,
                                             averager: GradientAverager(LocalCommunicator()), sampler: FixedSampler(g))
        let before = method.network.state.parameters.map { ($0.name, $0.variable.value) }
        _ = try method.step(train: b, validation: b, epoch: 0, learningRate: 0.1, control: StepControl(step: 0))
        let chosenOps = method.network.state.parameters.map(\.name).filter { name in
            let parts = name.split(separator: ".")
            guard parts.count > 5, parts[0] == "cells", parts[2] == "_ops", let cell = Int(parts[1]), let edge = Int(parts[3]),
                  let op = Int(parts[5]) else { return false }
            return path.edges(reduction: method.network.cells[cell].reduction)[edge] == op
        }
        for ((name, old), (_, v)) in zip(before, method.network.state.parameters) where name.contains("._ops.") && name.hasPrefix("cells.") {
            if chosenOps.contains(name) { XCTAssertNotEqual(v.value, old, name) } else { XCTAssertEqual(v.value, old, name) }
        }
    }

    func testPathsOfInvalidGenotypesAreRefused() throws {
        let space = CellSearchSpace.uniform(Primitive.darts, edges: 14)
        let twice = try Genotype(python: "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
        XCTAssertThrowsError(try SupernetPath(twice, space: space, steps: 4)) { XCTAssertTrue("\($0)".contains("takes input 0 twice"), "\($0)") }
        XCTAssertThrowsError(try SupernetPath(.nasnet, space: space, steps: 4))
        XCTAssertThrowsError(try SupernetPath(.dartsV2, space: .uniform([.none, .skipConnect], edges: 14), steps: 4)) {
            XCTAssertTrue("\($0)".contains("does not offer"), "\($0)")
        }
        let p = try SupernetPath(.dartsV2, space: space, steps: 4)
        XCTAssertEqual(p.normal.compactMap { $0 }.count, 8)
        XCTAssertEqual(p.normal[0], Primitive.darts.firstIndex(of: .sepConv3x3))  // node 0, input 0
        XCTAssertEqual(p.normal[9 + 2], Primitive.darts.firstIndex(of: .dilConv3x3))  // node 3 (edges 9...13), input 2
    }

    // MARK: Sampler

    func testUniformSamplesAreValidDeterministicAndCoverTheSpace() throws {
        let a = UniformArchitectureSampler(seed: 5), b = UniformArchitectureSampler(seed: 5), c = UniformArchitectureSampler(seed: 6)
        XCTAssertEqual(try a.sample(epoch: 2, step: 7, draw: 1), try b.sample(epoch: 2, step: 7, draw: 1))
        XCTAssertNotEqual(try a.sample(epoch: 2, step: 7, draw: 1), try c.sample(epoch: 2, step: 7, draw: 1))
        XCTAssertNotEqual(try a.sample(epoch: 2, step: 7, draw: 1), try a.sample(epoch: 2, step: 8, draw: 1))
        var opCounts: [Primitive: Int] = [:], firstNodePairs = Set<[Int]>(), lastNodeInputs = [Int](repeating: 0, count: 5)
        let n = 2000
        for s in 0..<n {
            let g = try a.sample(epoch: 0, step: s, draw: 0)
            for cell in [g.normal, g.reduce] {
                for node in 0..<4 {
                    let (x, y) = (cell[2 * node], cell[2 * node + 1])
                    XCTAssertLessThan(x.input, y.input, "distinct inputs, increasing")
                    XCTAssertLessThan(y.input, node + 2)
                }
                for e in cell { opCounts[e.op, default: 0] += 1 }
                firstNodePairs.insert([cell[0].input, cell[1].input])
                lastNodeInputs[cell[6].input] += 1
                lastNodeInputs[cell[7].input] += 1
            }
            XCTAssertEqual(g.normalConcat, [2, 3, 4, 5])
        }
        XCTAssertNil(opCounts[Primitive.none])
        XCTAssertEqual(opCounts.count, 7)
        // 2 cells x 8 edges x 2000 draws spread over 7 ops: 4571 each on average.
        for (op, count) in opCounts { XCTAssertEqual(Double(count), 2.0 * 8 * Double(n) / 7, accuracy: 300, op.name) }
        XCTAssertEqual(firstNodePairs, [[0, 1]])
        // The last node picks 2 of 5 inputs: each input 2/5 of the time.
        for count in lastNodeInputs { XCTAssertEqual(Double(count), 2.0 * Double(n) * 2 / 5, accuracy: 150) }
        // The final scoring's candidates: distinct, the same for a seed.
        let list = try RandomWeightSharing.candidates(count: 50, seed: 5, steps: 4, primitives: Primitive.darts)
        XCTAssertEqual(Set(list.map(\.pythonDescription)).count, 50)
        XCTAssertEqual(list, try RandomWeightSharing.candidates(count: 50, seed: 5, steps: 4, primitives: Primitive.darts))
    }

    // MARK: Method

    func testRewardDrawsAreScoredOnTheValidationBatchAndHandedToTheSampler() throws {
        let sampler = RecordingSampler()
        let method = try RandomWeightSharing(config(), inputShape: [1, 8, 8], classes: 3,
                                             averager: GradientAverager(LocalCommunicator()), sampler: sampler)
        let b = try batch()
        let weights = method.network.weights.map(\.value)
        let statistics = method.network.state.statistics.map { $0.statistics.runningMean }
        XCTAssertEqual(try method.reward(try genotype(seed: 9), on: b), try method.reward(try genotype(seed: 9), on: b),
                       "a reward pass changes nothing")
        XCTAssertEqual(method.network.weights.map(\.value), weights)
        XCTAssertEqual(method.network.state.statistics.map { $0.statistics.runningMean }, statistics)
        _ = try method.step(train: b, validation: b, epoch: 1, learningRate: 0.05, control: StepControl(step: 2))
        XCTAssertEqual(sampler.requests.map { [$0.0, $0.1, $0.2] }, [[1, 2, 0], [1, 2, 1], [1, 2, 2]])
        XCTAssertEqual(sampler.rewards.count, 2)
        XCTAssertTrue(sampler.rewards.allSatisfy { $0 >= 0 && $0 <= 1 && ($0 * 6).rounded() == $0 * 6 }, "\(sampler.rewards)")
        XCTAssertEqual(try method.genotype(), try sampler.sample(epoch: 1, step: 2, draw: 0), "the trained architecture")
        XCTAssertEqual(method.network.path, try method.path(try method.genotype()), "the trained path stays on after the rewards")
    }

    // MARK: Path-level BatchNorm

    private func statistics(_ net: SearchNetwork) -> [[Float]] {
        net.state.statistics.flatMap { [$0.statistics.runningMean.scalars, $0.statistics.runningVar.scalars] }
    }

    /// A supernet trained one step (so its shared statistics are not the initial ones), with the
    /// data of a search's end.
    private func scoringSetUp() throws -> (RandomWeightSharing, SearchEnd) {
        let method = try RandomWeightSharing(config(), inputShape: [1, 8, 8], classes: 3,
                                             averager: GradientAverager(LocalCommunicator()), sampler: FixedSampler(try genotype(seed: 5)))
        let b = try batch(count: 8)
        _ = try method.step(train: b, validation: b, epoch: 0, learningRate: 0.05, control: StepControl(step: 0))
        let train = try SyntheticDataset.make(count: 24, imageShape: [1, 8, 8], classes: 3, seed: 11)
        let validation = try SyntheticDataset.make(count: 16, imageShape: [1, 8, 8], classes: 3, seed: 12)
        let end = SearchEnd(trainSet: train, validationSet: validation, batchSize: 8, comm: LocalCommunicator(),
                            directory: RunDirectory(try temporaryDirectory(self).path), log: { _ in })
        return (method, end)
    }

    /// The same genotype with each node's two inputs listed in the other order: the same path.
    private func swappedInputs(_ g: Genotype) -> Genotype {
        var s = g
        s.normal = stride(from: 0, to: g.normal.count, by: 2).flatMap { [g.normal[$0 + 1], g.normal[$0]] }
        return s
    }

    func testPathStatisticsAreRecomputedOncePerPathThenReusedBitIdentically() throws {
        let (method, end) = try scoringSetUp()
        let net = method.network
        let shared = statistics(net)
        let settings = WeightSharingSettings(samples: 3, top: 3, batches: 1, bnBatches: 2)
        let scoring = SupernetScoring(network: net, end: end, settings: settings, seed: 9)
        let cache = try XCTUnwrap(scoring.statisticsCache)
        let a = try genotype(seed: 3), b = try genotype(seed: 8)
        XCTAssertNotEqual(a.pythonDescription, swappedInputs(a).pythonDescription)

        let accuracyA = try scoring.accuracy(of: a, wholeValidationHalf: false)
        let statisticsA = statistics(net)
        XCTAssertNotEqual(statisticsA, shared, "the path's own statistics, not the supernet's mixed ones")
        let onPath = net.state.statistics.filter { $0.statistics.batchesTracked > 0 }.count
        XCTAssertGreaterThan(onPath, 0)
        XCTAssertLessThan(onPath, net.state.statistics.count, "layers off the path are not recomputed")
        for (_, s) in net.state.statistics where s.batchesTracked == 0 {
            XCTAssertTrue(s.runningMean.scalars.allSatisfy { $0 == 0 } && s.runningVar.scalars.allSatisfy { $0 == 1 },
                          "a layer off the path keeps no shared statistics")
        }
        _ = try scoring.accuracy(of: b, wholeValidationHalf: false)
        XCTAssertNotEqual(statistics(net), statisticsA)
        XCTAssertEqual([cache.stores, cache.hits, cache.count], [2, 0, 2])

        // The same path again (inputs in the other order; then on the whole validation half):
        // its statistics come back, exactly, without a recalibration.
        XCTAssertEqual(try scoring.accuracy(of: swappedInputs(a), wholeValidationHalf: false), accuracyA)
        XCTAssertEqual(statistics(net), statisticsA)
        _ = try scoring.accuracy(of: a, wholeValidationHalf: true)
        XCTAssertEqual([cache.stores, cache.hits], [2, 2])
        XCTAssertEqual(statistics(net), statisticsA)

        // A scoring that recomputes everything gives the same numbers.
        let fresh = SupernetScoring(network: net, end: end, settings: settings, seed: 9)
        XCTAssertEqual(try fresh.accuracy(of: a, wholeValidationHalf: false), accuracyA)
        XCTAssertEqual(statistics(net), statisticsA)
        XCTAssertEqual(fresh.statisticsCache?.stores, 1)

        // Without recalibration (--ws-bn-batches 0) nothing is cached and the shared statistics stay.
        let none = SupernetScoring(network: try RandomWeightSharing(config(), inputShape: [1, 8, 8], classes: 3,
                                                                    averager: GradientAverager(LocalCommunicator())).network,
                                   end: end, settings: WeightSharingSettings(samples: 1, top: 1, batches: 1, bnBatches: 0), seed: 9)
        XCTAssertNil(none.statisticsCache)
    }

    func testTheScoringLeavesTheChosenCandidatesPathAndStatistics() throws {
        let (method, end) = try scoringSetUp()
        let candidates = try RandomWeightSharing.candidates(count: 4, seed: 2, steps: 4, primitives: Primitive.darts)
        let settings = WeightSharingSettings(samples: 4, top: 2, batches: 1, bnBatches: 2)
        let scoring = SupernetScoring(network: method.network, end: end, settings: settings, seed: 9)
        let (scores, chosen) = try scoring.run(candidates)
        XCTAssertEqual(scoring.statisticsCache?.stores, 4, "each candidate recomputed once")
        XCTAssertEqual(scoring.statisticsCache?.hits, 3, "the two re-scored and the chosen one reused")
        XCTAssertEqual(method.network.path, try method.path(scores[chosen].genotype))
        let left = statistics(method.network)
        _ = try SupernetScoring(network: method.network, end: end, settings: settings, seed: 9)
            .accuracy(of: scores[chosen].genotype, wholeValidationHalf: false)
        XCTAssertEqual(left, statistics(method.network), "the chosen candidate's statistics, not the last one scored")
    }

    func testTheCacheStaysWithinItsByteLimitDroppingTheOldest() throws {
        let net = try SearchNetwork(supernet, seed: 7)
        let a = try SupernetPath(try genotype(seed: 3), space: net.config.space, steps: 4)
        let b = try SupernetPath(try genotype(seed: 8), space: net.config.space, steps: 4)
        for (_, s) in net.state.statistics { s.reset() }
        for (i, (_, s)) in net.state.statistics.enumerated() where i % 3 == 0 {
            s.runningMean = Tensor(shape: s.runningMean.shape, repeating: Float(i))
            s.batchesTracked = 1
        }
        let one = net.state.statistics.enumerated().filter { $0.offset % 3 == 0 }.reduce(0) { $0 + 8 * $1.element.statistics.channels + 32 }
        let cache = PathStatisticsCache(byteLimit: one)
        cache.store(a, from: net.state)
        XCTAssertEqual([cache.count, cache.bytes], [1, one])
        cache.store(b, from: net.state)
        XCTAssertEqual([cache.count, cache.evictions], [1, 1])
        XCTAssertFalse(cache.restore(a, into: net.state))
        for (_, s) in net.state.statistics { s.reset() }
        XCTAssertTrue(cache.restore(b, into: net.state))
        for (i, (_, s)) in net.state.statistics.enumerated() {
            XCTAssertEqual(s.runningMean.scalars.first, i % 3 == 0 ? Float(i) : 0)
            XCTAssertEqual(s.batchesTracked, i % 3 == 0 ? 1 : 0)
        }
        let small = PathStatisticsCache(byteLimit: one - 1)
        small.store(a, from: net.state)
        XCTAssertEqual(small.count, 0, "an entry larger than the limit is not kept")
    }

    func testWeightSharingSettingsAreCheckedAndOnlyForRandomWS() throws {
        var c = config()
        XCTAssertEqual(WeightSharingSettings.preset(.quick).samples, 100)
        XCTAssertEqual(WeightSharingSettings.preset(.paper), WeightSharingSettings(samples: 1000, top: 10, batches: 4, bnBatches: 4))
        XCTAssertNoThrow(try c.validate())
        c.weightSharing = WeightSharingSettings(samples: 5, top: 6, batches: 1, bnBatches: 0)
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--ws-top"), "\($0)") }
        c.weightSharing = WeightSharingSettings(samples: 5, top: 2, batches: 0, bnBatches: 0)
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--ws-batches"), "\($0)") }
        c.weightSharing = WeightSharingSettings(samples: 5, top: 2, batches: 1, bnBatches: 0)
        XCTAssertNoThrow(try c.validate())
        c.method = .darts
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("apply to --method random-ws"), "\($0)") }
        c = config()
        c.order = 2
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("trains no architecture parameters"), "\($0)") }
    }
}

/// Always the same architecture.
private final class FixedSampler: ArchitectureSampler {
    let genotype: Genotype
    init(_ genotype: Genotype) { self.genotype = genotype }
    func sample(epoch: Int, step: Int, draw: Int) throws -> Genotype { genotype }
}

/// Uniform draws, two reward draws per step, every request and reward recorded.
private final class RecordingSampler: ArchitectureSampler {
    let uniform = UniformArchitectureSampler(seed: 1)
    var requests: [(Int, Int, Int)] = []
    var rewards: [Double] = []
    var rewardsPerStep: Int { 2 }
    func sample(epoch: Int, step: Int, draw: Int) throws -> Genotype {
        requests.append((epoch, step, draw))
        return try uniform.sample(epoch: epoch, step: step, draw: draw)
    }
    func observe(_ genotype: Genotype, reward: Double) throws { rewards.append(reward) }
}
