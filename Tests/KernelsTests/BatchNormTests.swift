import Kernels
import XCTest
import _TestSupport

final class BatchNormTests: XCTestCase {
    func testTrainingModeUsesBatchStatisticsAndUpdatesRunningAverages() throws {
        let st = BatchNormStatistics(channels: 1)
        let x = Variable(tensor([2, 1, 1, 2], [1, 2, 3, 4]))
        let y = try Tape(recording: false).batchNorm(x, statistics: st, training: true).value
        let inv = 1 / (1.25 + 1e-5 as Float).squareRoot()
        assertClose(y.scalars, [-1.5 * inv, -0.5 * inv, 0.5 * inv, 1.5 * inv])
        // momentum 0.1; the running variance uses the unbiased batch variance 5/3.
        assertClose(st.runningMean.scalars, [0.25])
        assertClose(st.runningVar.scalars, [0.9 + 0.1 * 5 / 3])
        XCTAssertEqual(st.batchesTracked, 1)
    }

    func testEvalModeUsesRunningAveragesAndAffine() throws {
        let st = BatchNormStatistics(channels: 2)
        st.runningMean = tensor([2], [1, -1])
        st.runningVar = tensor([2], [4, 0.25])
        let x = Variable(tensor([1, 2, 1, 1], [3, 0]))
        let y = try Tape(recording: false).batchNorm(x, gamma: Variable(tensor([2], [2, 1])), beta: Variable(tensor([2], [0.5, 0])),
                                                     statistics: st, training: false).value
        assertClose(y.scalars, [2 * 2 / (4 + 1e-5 as Float).squareRoot() + 0.5, 1 / (0.25 + 1e-5 as Float).squareRoot()], tolerance: 1e-5)
        XCTAssertEqual(st.batchesTracked, 0)
    }

    func testGradients() throws {
        for training in [true, false] {
            let x = leaf(randomTensor([3, 2, 3, 2], seed: 30))
            let gamma = leaf(randomTensor([2], seed: 31))
            let beta = leaf(randomTensor([2], seed: 32))
            try checkGradients([x, gamma, beta]) { tape in
                try tape.batchNorm(x, gamma: gamma, beta: beta, statistics: BatchNormStatistics(channels: 2), training: training)
            }
            let z = leaf(randomTensor([4, 3, 2, 2], seed: 33))
            try checkGradients([z]) { tape in
                try tape.batchNorm(z, statistics: BatchNormStatistics(channels: 3), training: training)
            }
        }
    }

    func testFusedBatchNormReLUEqualsBatchNormThenReLU() throws {
        for training in [true, false] {
            // 35 values per plane: the vector loops (8 wide) and their tails both run.
            let x = leaf(randomTensor([3, 2, 5, 7], seed: 34))
            let gamma = leaf(randomTensor([2], seed: 35))
            let beta = leaf(randomTensor([2], seed: 36))
            let st = BatchNormStatistics(channels: 2)
            st.runningMean = tensor([2], [0.1, -0.2])
            let fused = try Tape(recording: false).batchNormReLU(x, gamma: gamma, beta: beta, statistics: st, training: training,
                                                                 updateStatistics: false)
            let t = Tape(recording: false)
            let plain = t.relu(try t.batchNorm(x, gamma: gamma, beta: beta, statistics: st, training: training, updateStatistics: false))
            assertClose(fused.value.scalars, plain.value.scalars, tolerance: 1e-6)
            // Backward against the composition of the two (separately gradient-checked) ops; a
            // finite difference would straddle the ReLU kink for some element.
            var grads: [[Tensor]] = []
            let upstream = randomTensor([3, 2, 5, 7], seed: 37)
            for fusedOp in [true, false] {
                [x, gamma, beta].forEach { $0.zeroGrad() }
                let tape = Tape()
                let y = fusedOp
                    ? try tape.batchNormReLU(x, gamma: gamma, beta: beta, statistics: st, training: training, updateStatistics: false)
                    : tape.relu(try tape.batchNorm(x, gamma: gamma, beta: beta, statistics: st, training: training, updateStatistics: false))
                try tape.backward(y, gradient: upstream)
                grads.append([x.grad!, gamma.grad!, beta.grad!])
            }
            for (a, b) in zip(grads[0], grads[1]) { assertClose(a.scalars, b.scalars, tolerance: 1e-5) }
        }
    }

    func testBatchNormSumIsTheSumOfBatchNormsToTheBit() throws {
        // A cell node: two convolutions' outputs, each through its BatchNorm, drop path on both,
        // one or none (a mask with a dropped sample), summed; or one BatchNorm term and one plain
        // (a skip or a pool). The fused op against batchNorm + maskedSum / add: output, every
        // gradient and the running statistics, bit for bit, in training and eval mode, with the
        // second input also used elsewhere (its gradient accumulates).
        let shape = [4, 3, 5, 7]  // 35 values per plane: the vector loops and their tails
        let (a, b) = (randomTensor(shape, seed: 60), randomTensor(shape, seed: 61))
        let dy = randomTensor(shape, seed: 62)
        let params = (0..<4).map { randomTensor([3], seed: 63 + UInt64($0)) }
        let m = tensor([4], [1.25, 0, 1.25, 1.25])
        for training in [true, false] {
            for (masks, normed) in [([m, m], [true, true]), ([m, nil], [true, true]), ([nil, nil], [true, true]),
                                    ([nil, m], [true, false]), ([m, nil], [false, true])] as [([Tensor?], [Bool])] {
                func run(fused: Bool) throws -> [[Float]] {
                    let tape = Tape()
                    let (x, y) = (leaf(a), leaf(b))
                    let p = params.map { leaf($0) }
                    let stats = (0..<2).map { _ in BatchNormStatistics(channels: 3) }
                    stats[1].runningMean = tensor([3], [0.1, -0.2, 0.3])
                    let norms: [BatchNormApplication?] = (0..<2).map { k in
                        normed[k] ? BatchNormApplication(gamma: p[2 * k], beta: p[2 * k + 1], statistics: stats[k], training: training) : nil
                    }
                    var out: Variable
                    if fused {
                        out = try tape.batchNormSum([x, y], batchNorms: norms, masks: masks)
                    } else {
                        let h = try zip([x, y], norms).map { v, bn in
                            try bn.map { try tape.batchNorm(v, gamma: $0.gamma, beta: $0.beta, statistics: $0.statistics, training: training) } ?? v
                        }
                        out = masks.allSatisfy { $0 == nil } ? try tape.add(h[0], h[1]) : try tape.maskedSum(h, masks: masks)
                    }
                    out = try tape.add(out, y)
                    try tape.backward(out, gradient: dy)
                    let grads = ([x, y] + p).map { $0.grad?.scalars ?? [] }
                    return [out.value.scalars] + grads + stats.flatMap { [$0.runningMean.scalars, $0.runningVar.scalars] }
                }
                XCTAssertEqual(try run(fused: true), try run(fused: false), "training \(training), masks \(masks.map { $0 != nil }), BatchNorm \(normed)")
            }
        }
        // Finite differences through the fused op directly (training mode, one sample dropped).
        let x = leaf(randomTensor([3, 2, 3, 3], seed: 70)), y = leaf(randomTensor([3, 2, 3, 3], seed: 71))
        let gamma = leaf(randomTensor([2], seed: 72)), beta = leaf(randomTensor([2], seed: 73))
        try checkGradients([x, y, gamma, beta]) { tape in
            try tape.batchNormSum([x, y], batchNorms: [BatchNormApplication(gamma: gamma, beta: beta, statistics: BatchNormStatistics(channels: 2),
                                                                            training: true), nil],
                                  masks: [tensor([3], [2, 0, 2]), tensor([3], [0, 2, 2])])
        }
        assertKernelError("batchNormSum", mentions: ["2 inputs", "1 BatchNorms"]) {
            try Tape().batchNormSum([x, y], batchNorms: [nil], masks: [nil, nil])
        }
        assertKernelError("batchNormSum", mentions: ["one value per sample"]) {
            try Tape().batchNormSum([x, y], batchNorms: [nil, nil], masks: [tensor([2], [1, 1]), nil])
        }
    }

    func testWeightedBatchNormSumIsBatchNormThenWeightedSumToTheBit() throws {
        // A mixed edge: three ops' outputs, two through their BatchNorm (sep_conv, pooling) and one
        // plain (skip), weighted by a row of softmaxed alphas at indices skipping `none`. The fused
        // op against batchNorm + weightedSum: output, every gradient (the alphas' included, x's
        // also added onto another use of x), the running statistics and what the ranks' reducer
        // sees, bit for bit, in training and eval mode. 5 x 6 x 13 x 11 = 4290 values: two of the
        // sum's 4096-value blocks, with planes of 143 values straddling the block boundary.
        let shape = [5, 6, 13, 11]
        let xs = (0..<3).map { randomTensor(shape, seed: 90 + UInt64($0)) }
        let weights = randomTensor([4], seed: 93)
        let dy = randomTensor(shape, seed: 94)
        for training in [true, false] {
            for normed in [[true, false, true], [false, false, true], [true, true, true]] {
                func run(fused: Bool) throws -> [[Float]] {
                    let tape = Tape()
                    let v = xs.map { leaf($0) }
                    let w = leaf(weights)
                    let stats = (0..<3).map { _ in BatchNormStatistics(channels: 6) }
                    stats[2].runningMean = tensor([6], [0.1, -0.2, 0.3, 0, 0.5, -0.1])
                    var reduced: [Double] = []
                    let norms: [BatchNormApplication?] = (0..<3).map { k in
                        normed[k] ? BatchNormApplication(gamma: nil, beta: nil, statistics: stats[k], training: training,
                                                         reducer: { sums in reduced += sums }) : nil
                    }
                    var out: Variable
                    if fused {
                        out = try tape.weightedBatchNormSum(v, weights: w, indices: [0, 2, 3], batchNorms: norms)
                    } else {
                        let h = try zip(v, norms).map { x, bn in
                            try bn.map { try tape.batchNorm(x, statistics: $0.statistics, training: training, reducer: $0.reducer) } ?? x
                        }
                        out = try tape.weightedSum(h, weights: w, indices: [0, 2, 3])
                    }
                    out = try tape.add(out, v[1])
                    try tape.backward(out, gradient: dy)
                    return [out.value.scalars] + (v + [w]).map { $0.grad!.scalars }
                        + stats.flatMap { [$0.runningMean.scalars, $0.runningVar.scalars] } + [reduced.sorted().map { Float($0) }]
                }
                XCTAssertEqual(try run(fused: true), try run(fused: false), "training \(training), BatchNorm \(normed)")
            }
        }
        // Finite differences through the fused op (training mode; the alphas' gradient included).
        let a = leaf(randomTensor([3, 2, 3, 3], seed: 95)), b = leaf(randomTensor([3, 2, 3, 3], seed: 96))
        let w = leaf(randomTensor([2], seed: 97))
        try checkGradients([a, b, w]) { tape in
            try tape.weightedBatchNormSum([a, b], weights: w, batchNorms: [BatchNormApplication(gamma: nil, beta: nil,
                                                                                                statistics: BatchNormStatistics(channels: 2),
                                                                                                training: true), nil])
        }
        assertKernelError("weightedBatchNormSum", mentions: ["2 inputs", "1 BatchNorms"]) {
            try Tape().weightedBatchNormSum([a, b], weights: w, batchNorms: [nil])
        }
    }

    func testStatisticsFromTheProducersPlaneSumsAreTheSame() throws {
        // A 1x1 convolution and the fused depthwise+1x1 ops take their output's plane sums for
        // the BatchNorm after them; that BatchNorm normalises and updates its running averages as
        // it does from the value itself (a copy, without the sums), bit for bit.
        let x = randomTensor([5, 4, 6, 7], seed: 74)
        let (w1, wd, wp) = (randomTensor([3, 4, 1, 1], seed: 75), randomTensor([4, 1, 3, 3], seed: 76), randomTensor([3, 4, 1, 1], seed: 77))
        let producers: [(String, (Tape, Variable) throws -> Variable)] = [
            ("conv2d 1x1", { t, v in try t.conv2d(v, leaf(w1)) }),
            ("depthwise+1x1", { t, v in try t.depthwisePointwiseConv2d(v, depthwise: leaf(wd), pointwise: leaf(wp), padding: 1, reluInput: true) }),
            ("batchNormReLU+depthwise+1x1", { t, v in
                try t.batchNormReLUDepthwisePointwiseConv2d(v, batchNorm: BatchNormApplication(gamma: nil, beta: nil, statistics: BatchNormStatistics(channels: 4),
                                                                                               training: true),
                                                            depthwise: leaf(wd), pointwise: leaf(wp), padding: 1)
            }),
        ]
        for (name, produce) in producers {
            var results: [[[Float]]] = []
            for fromSums in [true, false] {
                let tape = Tape()
                let p = try produce(tape, leaf(x))
                let input = fromSums ? p : Variable(p.value)
                let st = BatchNormStatistics(channels: 3)
                let y = try tape.batchNorm(input, statistics: st, training: true)
                results.append([y.value.scalars, st.runningMean.scalars, st.runningVar.scalars])
            }
            XCTAssertEqual(results[0], results[1], name)
        }
    }

    func testReducerSeesSumsAndGlobalCount() throws {
        // A reducer that doubles every sum acts as two ranks holding the same batch: normalisation
        // and input gradient are unchanged, while the running variance uses the doubled count.
        let x = tensor([2, 1, 1, 2], [1, 2, 3, 4])
        var results: [(Tensor, Tensor, BatchNormStatistics)] = []
        for doubled in [false, true] {
            let v = leaf(x)
            let st = BatchNormStatistics(channels: 1)
            var calls = 0
            let tape = Tape()
            let y = try tape.batchNorm(v, statistics: st, training: true, reducer: doubled ? { buf in
                calls += 1
                for i in buf.indices { buf[i] *= 2 }
            } : nil)
            try tape.backward(y, gradient: tensor([2, 1, 1, 2], [1, -2, 0.5, 3]))
            if doubled { XCTAssertEqual(calls, 2, "forward statistics and backward sums") }
            results.append((y.value, v.grad!, st))
        }
        assertClose(results[0].0.scalars, results[1].0.scalars, tolerance: 1e-6)
        assertClose(results[0].1.scalars, results[1].1.scalars, tolerance: 1e-5)
        assertClose(results[1].2.runningVar.scalars, [0.9 + 0.1 * 1.25 * 8 / 7])
    }

    func testErrors() {
        let t = Tape(recording: false)
        assertKernelError("batchNorm", mentions: ["[2, 3, 4, 4]", "2"]) {
            try t.batchNorm(Variable(Tensor(shape: [2, 3, 4, 4])), statistics: BatchNormStatistics(channels: 2), training: true)
        }
        assertKernelError("batchNorm", mentions: ["gamma [2]"]) {
            try t.batchNorm(Variable(Tensor(shape: [2, 3, 4, 4])), gamma: Variable(Tensor(shape: [2])),
                            statistics: BatchNormStatistics(channels: 3), training: true)
        }
        assertKernelError("batchNorm", mentions: ["[1, 3, 1, 1]"]) {
            try t.batchNorm(Variable(Tensor(shape: [1, 3, 1, 1])), statistics: BatchNormStatistics(channels: 3), training: true)
        }
    }
}
