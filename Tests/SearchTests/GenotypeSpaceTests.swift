import Kernels
import Search
import XCTest

final class GenotypeSpaceTests: XCTestCase {
    let space = GenotypeSpace.darts

    /// Entries of the positional decisions that differ.
    private func positionalDifferences(_ s: GenotypeSpace, _ a: Genotype, _ b: Genotype) -> Int {
        zip(s.decisions(of: a), s.decisions(of: b)).filter { $0 != $1 }.count
    }

    func testDefaultsAreTheDARTSSpace() throws {
        XCTAssertEqual(space.steps, 4)
        XCTAssertEqual(space.ops, [.maxPool3x3, .avgPool3x3, .skipConnect, .sepConv3x3, .sepConv5x5, .dilConv3x3, .dilConv5x5])
        XCTAssertEqual(space.concat, [2, 3, 4, 5])
        // Input pairs 1 * 3 * 6 * 10 = 180 per cell, 7^8 op choices per cell, two cells.
        XCTAssertEqual(space.size, pow(180 * pow(7, 8), 2))
        XCTAssertEqual(space.size, 1.0767e18, accuracy: 1e14)
        XCTAssertEqual(try GenotypeSpace(steps: 1, ops: [.skipConnect, .sepConv3x3]).size, 16)
        XCTAssertTrue(space.contains(.dartsV1))
        XCTAssertTrue(space.contains(.dartsV2))
        XCTAssertFalse(space.contains(.nasnet))
        XCTAssertEqual(space.decisions(of: .dartsV2).count, 32)
        XCTAssertEqual(Array(space.decisions(of: .dartsV2).prefix(4)), [.input(0), .op(.sepConv3x3), .input(1), .op(.sepConv3x3)])
    }

    func testMalformedSpacesAreRefused() {
        for (steps, ops, message) in [(0, GenotypeSpace.dartsOps, "at least 1 node"), (4, [], "at least one op"),
                                      (4, Primitive.darts, "cannot offer 'none'"),
                                      (4, [.sepConv3x3, .sepConv3x3], "must be distinct")] {
            XCTAssertThrowsError(try GenotypeSpace(steps: steps, ops: ops)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
    }

    func testValidationNamesWhatDoesNotFit() throws {
        let g = Genotype.dartsV2
        var twice = g
        twice.normal[7].input = twice.normal[6].input
        var foreignOp = g
        foreignOp.reduce[3].op = .sepConv7x7
        var partialConcat = g
        partialConcat.reduceConcat = [2, 3, 5]
        for (bad, message) in [(twice, "normal node 5 takes input 0 twice"), (foreignOp, "reduce edge 3 uses 'sep_conv_7x7'"),
                               (partialConcat, "reduce_concat [2, 3, 5] must list all intermediate nodes [2, 3, 4, 5]"),
                               (.nasnet, "has 5 nodes; the space has 4")] {
            XCTAssertFalse(space.contains(bad))
            XCTAssertThrowsError(try space.validate(bad)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
            var rng = RandomGenerator(seed: 1, stream: .evolution)
            XCTAssertThrowsError(try space.mutate(bad, using: &rng))
        }
    }

    /// The must-show property over thousands of draws, in the DARTS space and in small spaces
    /// where most draws of a mutation cannot change anything and are drawn again.
    func testSamplesAndChildrenAreValidAndDifferFromTheParentInExactlyOneDecision() throws {
        let spaces = [space, try GenotypeSpace(steps: 2, ops: [.skipConnect, .sepConv3x3]),
                      try GenotypeSpace(steps: 1, ops: [.skipConnect, .sepConv3x3]), try GenotypeSpace(steps: 3, ops: [.maxPool3x3])]
        for s in spaces {
            var rng = RandomGenerator(seed: 7, stream: .evolution)
            var walker = s.sample(using: &rng)
            // 2000 samples and 4000 children in the DARTS space.
            for _ in 0..<(s == space ? 2000 : 400) {
                let g = s.sample(using: &rng)
                XCTAssertNoThrow(try s.validate(g))
                // A fresh sample's child, and a long random walk (whose nodes list their inputs in any order).
                for parent in [g, walker] {
                    let child = try s.mutate(parent, using: &rng)
                    XCTAssertNoThrow(try s.validate(child))
                    XCTAssertEqual(s.distance(parent, child), 1, "\(parent.pythonDescription) -> \(child.pythonDescription)")
                    XCTAssertEqual(s.distance(child, parent), 1)
                    XCTAssertEqual(positionalDifferences(s, parent, child), 1)
                    XCTAssertNotEqual(parent, child)
                }
                walker = try s.mutate(walker, using: &rng)
            }
        }
    }

    func testSamplingCoversEveryInputPairAndOpUniformly() {
        var rng = RandomGenerator(seed: 3, stream: .evolution)
        let draws = 6000
        // [cell][node][pair] and [cell][edge][op] counts.
        var pairs = [[[Int: Int]]](repeating: [[Int: Int]](repeating: [:], count: 4), count: 2)
        var ops = [[[Primitive: Int]]](repeating: [[Primitive: Int]](repeating: [:], count: 8), count: 2)
        for _ in 0..<draws {
            let g = space.sample(using: &rng)
            for (c, edges) in [g.normal, g.reduce].enumerated() {
                for node in 0..<4 {
                    let (a, b) = (edges[2 * node].input, edges[2 * node + 1].input)
                    pairs[c][node][min(a, b) * 10 + max(a, b), default: 0] += 1
                }
                for (e, edge) in edges.enumerated() { ops[c][e][edge.op, default: 0] += 1 }
            }
        }
        for c in 0..<2 {
            for node in 0..<4 {
                let n = node + 2
                XCTAssertEqual(pairs[c][node].count, n * (n - 1) / 2, "cell \(c) node \(node): \(pairs[c][node])")
                let expected = Double(draws) / Double(n * (n - 1) / 2)
                for (pair, count) in pairs[c][node] {
                    XCTAssertEqual(Double(count), expected, accuracy: 0.15 * expected, "cell \(c) node \(node) pair \(pair)")
                }
            }
            for e in 0..<8 {
                XCTAssertEqual(Set(ops[c][e].keys), Set(space.ops))
                for (op, count) in ops[c][e] {
                    XCTAssertEqual(Double(count), Double(draws) / 7, accuracy: 0.15 * Double(draws) / 7, "cell \(c) edge \(e) \(op)")
                }
            }
        }
    }

    func testMutationReachesEveryKindOfChangeButNeverNodeZerosInputs() throws {
        var rng = RandomGenerator(seed: 11, stream: .evolution)
        var changed = Set<Int>()  // positions in decisions(of:)
        var newInputs = Set<Int>()
        for _ in 0..<3000 {
            let g = space.sample(using: &rng)
            let child = try space.mutate(g, using: &rng)
            let (a, b) = (space.decisions(of: g), space.decisions(of: child))
            let k = a.indices.first { a[$0] != b[$0] }!
            changed.insert(k)
            if case .input(let i) = b[k] { newInputs.insert(i) }
        }
        // Input decisions of node 0 (positions 0, 2 of each cell) never change; every other does.
        let fixed: Set<Int> = [0, 2, 16, 18]
        XCTAssertEqual(changed, Set(0..<32).subtracting(fixed))
        XCTAssertEqual(newInputs, Set(0...4))
    }

    func testDistanceTakesANodesEdgesAsAnUnorderedPair() throws {
        let g = Genotype.dartsV2
        var swapped = g
        swapped.normal.swapAt(0, 1)
        swapped.reduce.swapAt(6, 7)
        XCTAssertEqual(space.distance(g, swapped), 0)
        XCTAssertEqual(positionalDifferences(space, g, swapped), 2 + 4)  // normal node 0's two ops are equal
        var changed = swapped
        changed.normal[1].op = .dilConv5x5  // the edge from input 0
        XCTAssertEqual(space.distance(g, changed), 1)
        // The normal cell's third node: [(sep_conv_3x3, 1), (skip_connect, 0)] against
        // [(skip_connect, 1), (sep_conv_3x3, 0)]: two ops, or two inputs, differ.
        var crossed = g
        crossed.normal[4].op = .skipConnect
        crossed.normal[5].op = .sepConv3x3
        XCTAssertEqual(space.distance(g, crossed), 2)
        // DARTS V1 against V2, node by node (normal 0 + 1 + 0 + 2, reduce 0 + 1 + 0 + 2).
        XCTAssertEqual(space.distance(.dartsV1, .dartsV2), 6)
        XCTAssertEqual(space.distance(.dartsV2, .dartsV1), 6)
    }

    func testASpaceOfOneGenotypeHasNothingToMutate() throws {
        let single = try GenotypeSpace(steps: 1, ops: [.skipConnect])
        XCTAssertEqual(single.size, 1)
        XCTAssertFalse(single.isMutable)
        var rng = RandomGenerator(seed: 1, stream: .evolution)
        let g = single.sample(using: &rng)
        XCTAssertThrowsError(try single.mutate(g, using: &rng)) { XCTAssertTrue("\($0)".contains("nothing to mutate")) }
    }

    func testCodableRoundTripAndRefusal() throws {
        let s = try GenotypeSpace(steps: 3, ops: [.sepConv3x3, .skipConnect])
        let data = try JSONEncoder().encode(s)
        XCTAssertEqual(String(decoding: data, as: UTF8.self).contains("\"sep_conv_3x3\""), true)
        XCTAssertEqual(try JSONDecoder().decode(GenotypeSpace.self, from: data), s)
        let bad = Data(#"{"steps": 4, "ops": ["none", "skip_connect"]}"#.utf8)
        XCTAssertThrowsError(try JSONDecoder().decode(GenotypeSpace.self, from: bad)) { XCTAssertTrue("\($0)".contains("'none'")) }
    }
}
