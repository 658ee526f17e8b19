import Kernels
import Search
import XCTest
import _TestSupport

/// NASNet and AmoebaNet from the reference genotypes: 5-node cells, partial concat,
/// sep_conv_7x7 and conv_7x1_1x7. The numbers were counted with the reference `model.NetworkCIFAR`
/// in PyTorch (not with this project); the key lists in Fixtures/ are its state_dict.
final class PublishedGenotypeTests: XCTestCase {
    private func network(_ g: Genotype, c: Int, layers: Int, aux: Bool) throws -> EvalNetwork {
        try EvalNetwork(EvalNetworkConfig(channels: c, layers: layers, inputShape: [3, 32, 32], classes: 10, auxiliary: aux),
                        genotype: g, seed: 1)
    }

    func testParameterCountsMatchTheReference() throws {
        for (g, c, layers, withAux, withoutAux) in [
            (Genotype.nasnet, 36, 20, 4_288_944, 3_830_950), (.nasnet, 16, 8, 761_220, 333_946),
            (.amoebaNet, 36, 20, 3_603_072, 3_145_078), (.amoebaNet, 16, 8, 753_604, 326_330),
        ] {
            let net = try network(g, c: c, layers: layers, aux: true)
            XCTAssertEqual(net.state.parameterCount, withAux, "\(g.pythonDescription.prefix(40)) C=\(c)")
            XCTAssertEqual(net.parameterCountWithoutAuxiliary, withoutAux)
        }
    }

    func testForwardMACsMatchTheReference() throws {
        for (g, macs) in [(Genotype.nasnet, 603_452_448), (.amoebaNet, 488_931_552)] {
            let net = try network(g, c: 36, layers: 20, aux: false)
            let tape = Tape(recording: false)
            _ = try net.forward(Variable(Tensor(shape: [1, 3, 32, 32])), ForwardContext(tape: tape, training: false))
            XCTAssertEqual(tape.multiplyAccumulates, macs)
        }
    }

    func testStateDictMatchesTheReferenceKeysAndShapes() throws {
        for (g, file) in [(Genotype.nasnet, "nasnet_c8_l5_keys.txt"), (.amoebaNet, "amoeba_c8_l5_keys.txt")] {
            let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/" + file)
            let expected = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { line -> (String, String) in
                let parts = line.split(separator: "\t")
                return (String(parts[0]), String(parts[1]))
            }
            let net = try network(g, c: 8, layers: 5, aux: false)
            var ours: [(String, String)] = []
            func shape(_ s: [Int]) -> String { s.count == 1 ? "(\(s[0]),)" : "(" + s.map(String.init).joined(separator: ", ") + ")" }
            for (name, v) in net.state.parameters { ours.append((name, shape(v.shape))) }
            for (name, s) in net.state.statistics {
                ours += [(name + ".running_mean", shape([s.channels])), (name + ".running_var", shape([s.channels])),
                         (name + ".num_batches_tracked", "()")]
            }
            let a = Dictionary(uniqueKeysWithValues: expected), b = Dictionary(uniqueKeysWithValues: ours)
            XCTAssertEqual(Set(a.keys).subtracting(b.keys).sorted(), [], "\(file): names the reference has and we lack")
            XCTAssertEqual(Set(b.keys).subtracting(a.keys).sorted(), [], "\(file): names we have and the reference lacks")
            for (k, v) in a where b[k] != nil { XCTAssertEqual(b[k], v, "\(file): shape of \(k)") }
        }
    }

    func testFiveNodeCellsTrainWithGradientsEverywhere() throws {
        let net = try network(.amoebaNet, c: 4, layers: 3, aux: false)
        let x = randomTensor([2, 3, 32, 32], seed: 1)
        let tape = Tape()
        let (logits, _) = try net.forward(Variable(x), ForwardContext(tape: tape, training: true))
        try tape.backward(try tape.crossEntropy(logits, labels: [0, 1]))
        XCTAssertTrue(net.weights.allSatisfy { $0.grad != nil })
        XCTAssertEqual(Genotype.builtIn["NASNet"], .nasnet)
        XCTAssertEqual(try Genotype(python: Genotype.amoebaNet.pythonDescription), .amoebaNet)
    }
}
