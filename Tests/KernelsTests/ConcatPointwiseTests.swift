@testable import Kernels
import XCTest
import _TestSupport

/// `Tape.reluConcatConv2d`: a cell output's readers, the next cells' 1x1 preprocessing, on the
/// node states instead of their formed concatenation.
final class ConcatPointwiseTests: XCTestCase {
    /// Two readers of one cell output (as the next two cells' preprocessing), one state also read
    /// by an op recorded before them (as a later node of the cell: its gradient is added to the
    /// readers'), one state not needing a gradient: against
    /// conv2d(relu(concatChannels)) for each reader, the outputs, their plane sums and every
    /// gradient bit for bit. 8x8 planes (the panel kernel's 64 columns, when it is on) and 5x7.
    func testIsTheConvolutionOfTheConcatenationsReLUToTheBit() throws {
        for (h, w) in [(8, 8), (5, 7)] {
            let states = [randomTensor([3, 2, h, w], seed: 90), randomTensor([3, 4, h, w], seed: 91), randomTensor([3, 3, h, w], seed: 92)]
            let weights = [randomTensor([5, 9, 1, 1], seed: 93), randomTensor([6, 9, 1, 1], seed: 94)]
            let other = randomTensor([3, 4, h, w], seed: 95)
            let dy = randomTensor([3, 15, h, w], seed: 96)
            func run(fused: Bool) throws -> [[Float]] {
                let tape = Tape()
                let xs = states.map(leaf)
                xs[2].requiresGrad = false
                let ws = weights.map(leaf)
                // The state also read by an earlier op (a later node of its cell): its gradient from
                // that op is added after the readers' in backward.
                let also = try tape.add(xs[1], leaf(other))
                var ys: [Variable] = []
                if fused {
                    ys = try ws.map { try tape.reluConcatConv2d(xs, $0) }
                } else {
                    let r = try tape.concatChannelsReLU(xs)
                    ys = try ws.map { try tape.conv2d(r, $0) }
                }
                ys.append(also)
                try tape.backward(try tape.concatChannels(ys), gradient: dy)
                XCTAssertNil(xs[2].grad)
                return [ys[0].value.scalars, ys[1].value.scalars, ys[0].planeSums ?? [], ys[1].planeSums ?? [],
                        xs[0].grad!.scalars, xs[1].grad!.scalars, ws[0].grad!.scalars, ws[1].grad!.scalars]
            }
            let (fused, separate) = (try run(fused: true), try run(fused: false))
            for (k, (a, b)) in zip(fused, separate).enumerated() {
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(h)x\(w): result \(k)")
            }
        }
    }

    func testGradient() throws {
        let xs = [leaf(randomTensor([2, 2, 3, 3], seed: 100, spaced: true)), leaf(randomTensor([2, 1, 3, 3], seed: 101, spaced: true))]
        let w = leaf(randomTensor([4, 3, 1, 1], seed: 102))
        try checkGradients(xs + [w]) { try $0.reluConcatConv2d(xs, w) }
    }

    func testRejectsRepeatedAndMismatchedInputs() {
        let (a, b) = (leaf(randomTensor([2, 2, 4, 4], seed: 103)), leaf(randomTensor([2, 2, 4, 5], seed: 104)))
        let tape = Tape()
        XCTAssertThrowsError(try tape.reluConcatConv2d([a, a], leaf(randomTensor([3, 4, 1, 1], seed: 105))))
        XCTAssertThrowsError(try tape.reluConcatConv2d([a, b], leaf(randomTensor([3, 4, 1, 1], seed: 105))))
        XCTAssertThrowsError(try tape.reluConcatConv2d([a], leaf(randomTensor([3, 2, 3, 3], seed: 106))), "not a 1x1 convolution")
        XCTAssertThrowsError(try tape.reluConcatConv2d([a], leaf(randomTensor([3, 5, 1, 1], seed: 107))), "channel count")
    }
}
