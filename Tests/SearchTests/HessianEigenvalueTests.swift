import Kernels
import Search
import XCTest
import _TestSupport

/// L(a; batch) = s/2 * ||a B^T||^2 with s read from the batch: the Hessian w.r.t. a is s * B^T B,
/// exactly, and the central finite difference of its product with a vector is exact too.
private final class QuadraticAlphaModel: ArchitectureModel {
    let w = Variable(tensor([1], [1]), requiresGrad: true)
    let a: Variable
    let other = Variable(tensor([2], [0.5, -0.5]), requiresGrad: true)
    let b: Variable
    init(a: [Float], b: [Float], n: Int) {
        self.a = Variable(tensor([1, n], a), requiresGrad: true)
        self.b = Variable(tensor([b.count / n, n], b), requiresGrad: false)
    }
    var weights: [Variable] { [w] }
    var architecture: [Variable] { [a, other] }
    func loss(on batch: Batch, _ ctx: ForwardContext) throws -> Variable {
        let t = ctx.tape
        let y = try t.linear(a, b)
        return t.scale(t.sumAll(try t.multiply(y, y)), batch.images.scalars[0] / 2)
    }
}

final class HessianEigenvalueTests: XCTestCase {
    // B symmetric with eigenvalues 1, 2, 4, so B^T B = B^2 has 1, 4, 16.
    let b: [Float] = [2, 1, 0, 1, 3, 1, 0, 1, 2]

    func testPowerIterationFindsTheTopEigenvalueOfAnExplicitMatrix() {
        let h: [[Float]] = [[5, 5, 1], [5, 11, 5], [1, 5, 5]]  // B^2
        let lambda = HessianEigenvalue(seed: 1).powerIteration(dimension: 3) { v in
            h.map { row in zip(row, v).reduce(0) { $0 + $1.0 * $1.1 } }
        }
        XCTAssertEqual(lambda, 16, accuracy: 1e-3)
    }

    func testFiniteDifferenceHessianOfAQuadraticModelMatchesTheExactTopEigenvalue() throws {
        let m = QuadraticAlphaModel(a: [0.3, -0.2, 0.7], b: b, n: 3)
        let before = m.a.value.scalars
        var reduced = 0
        // Two batches with s = 1 and s = 3: the mean Hessian is 2 B^2, top eigenvalue 32.
        let batches = [Batch(images: tensor([1], [1]), labels: [0]), Batch(images: tensor([1], [3]), labels: [0])]
        let lambda = try HessianEigenvalue(iterations: 20, seed: 7).dominant(model: m, alphas: [m.a], batches: batches) { vs in
            XCTAssertEqual(vs.map(\.name), [m.a.name])
            reduced += 1
        }
        XCTAssertEqual(lambda, 32, accuracy: 32 * 1e-3)
        XCTAssertEqual(reduced, 40, "two gradients per iteration, each averaged over ranks once")
        XCTAssertEqual(m.a.value.scalars, before, "alphas restored")
        XCTAssertTrue(m.w.requiresGrad && m.other.requiresGrad)
        XCTAssertNil(m.a.grad)
    }

    func testTheSameSeedGivesTheSameEstimate() throws {
        let h: [[Float]] = [[2, 1], [1, 2]]
        func estimate(_ seed: UInt64) -> Double {
            HessianEigenvalue(iterations: 3, seed: seed).powerIteration(dimension: 2) { v in
                h.map { row in zip(row, v).reduce(0) { $0 + $1.0 * $1.1 } }
            }
        }
        XCTAssertEqual(estimate(4), estimate(4))
    }
}
