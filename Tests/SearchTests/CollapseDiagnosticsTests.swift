import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// Collapse diagnostics on crafted alphas: skip connections in the normal cell, the share of
/// parameter-free ops in the genotype, the mean entropy of the op weights.
final class CollapseDiagnosticsTests: XCTestCase {
    private func network() throws -> SearchNetwork {
        try SearchNetwork(SupernetConfig(channels: 4, layers: 3, inputShape: [1, 8, 8], classes: 3), seed: 1)
    }

    /// Rows of zeros with `value` in column `column`.
    private func rows(_ column: Int, _ value: Float, edges: Int = 14, k: Int = 8) -> Tensor {
        var t = Tensor(shape: [edges, k])
        for e in 0..<edges { t.scalars[e * k + column] = value }
        return t
    }

    func testSkipCollapsedNormalCell() throws {
        let net = try network()
        let skip = Primitive.darts.firstIndex(of: .skipConnect)!, sep = Primitive.darts.firstIndex(of: .sepConv3x3)!
        net.architectureParameters.alphasNormal.value = rows(skip, 3)
        net.architectureParameters.alphasReduce.value = rows(sep, 3)
        let d = try CollapseDiagnostics(genotype: try net.genotype(), alphas: net.architecture.map(\.value))
        XCTAssertEqual(d.skipCount, 8, "every normal edge is a skip connection")
        XCTAssertEqual(d.parameterFreeShare, 0.5, accuracy: 1e-12, "8 of the 16 edges")
        // One logit 3 above seven zeros: p = e^3 / (e^3 + 7), q = 1 / (e^3 + 7).
        let z = exp(3.0) + 7, p = exp(3.0) / z, q = 1 / z
        XCTAssertEqual(d.alphaEntropy, -(p * log(p) + 7 * q * log(q)), accuracy: 1e-5)
        XCTAssertEqual(d.fields["skip_count"], .number(8))
        XCTAssertTrue(d.summary.hasPrefix("skip 8, parameter-free 50%, alpha entropy 1.07"), d.summary)
    }

    func testUniformAlphasHaveEntropyLogKAndPoolsCountAsParameterFree() throws {
        let net = try network()
        net.architecture.forEach { $0.value = Tensor.zeros(like: $0.value) }
        // Ties take the first op other than none: max_pool_3x3 on every edge.
        let d = try CollapseDiagnostics(genotype: try net.genotype(), alphas: net.architecture.map(\.value))
        XCTAssertEqual(d.skipCount, 0)
        XCTAssertEqual(d.parameterFreeShare, 1)
        XCTAssertEqual(d.alphaEntropy, log(8.0), accuracy: 1e-5)
    }

    func testDARTSV2AndBetasIgnored() throws {
        // DARTS_V2: two skips in the normal cell; the reduction cell is 5 max pools and 3 skips.
        let d = try CollapseDiagnostics(genotype: .dartsV2, alphas: [Tensor(shape: [2, 4]), Tensor(shape: [14])])
        XCTAssertEqual(d.skipCount, 2)
        XCTAssertEqual(d.parameterFreeShare, 10.0 / 16, accuracy: 1e-12)
        XCTAssertEqual(d.alphaEntropy, log(4.0), accuracy: 1e-5, "the betas vector is not an alpha row")
    }
}
