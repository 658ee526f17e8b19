import Foundation
import Kernels
import Search
import XCTest

/// Runs a strategy with up to `workers` candidates in flight, finishing them out of order (the one
/// at position `finished % inFlight.count`), until the strategy has nothing more or `results`
/// results came back. Returns the proposals in order.
@discardableResult
private func drive<S: SearchStrategy>(_ strategy: inout S, workers: Int, results: Int = .max,
                                      fitness: (Genotype) -> Double?) throws -> [Genotype] {
    var proposals: [Genotype] = []
    var inFlight: [Genotype] = []
    var finished = 0
    while finished < results {
        while inFlight.count < workers, let g = try strategy.propose() {
            proposals.append(g)
            inFlight.append(g)
        }
        guard !inFlight.isEmpty else { break }
        let g = inFlight.remove(at: finished % inFlight.count)
        try strategy.observe(g, fitness: fitness(g))
        finished += 1
    }
    return proposals
}

/// The synthetic fitness: the fraction of the 16 edges that are separable convolutions.
private func sepConvFraction(_ g: Genotype) -> Double {
    Double((g.normal + g.reduce).filter { $0.op == .sepConv3x3 || $0.op == .sepConv5x5 }.count) / 16
}

/// A deterministic stand-in for training noise: uniform in [-amplitude, amplitude) from the
/// genotype's text (not from `Hasher`, which is seeded per process).
private func noise(_ g: Genotype, amplitude: Double) -> Double {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in g.pythonDescription.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    var rng = RandomGenerator(seed: h, streamID: 0)
    return amplitude * Double(rng.uniform(-1, 1))
}

final class EvolutionTests: XCTestCase {
    func testOptionsOutOfRangeNameTheirFlag() throws {
        XCTAssertEqual(RegularizedEvolution.Options.preset(.paper, candidates: 1000),
                       .init(population: 100, sampleSize: 25, candidates: 1000))
        XCTAssertEqual(RegularizedEvolution.Options.preset(.small, candidates: 50), .init(population: 10, sampleSize: 3, candidates: 50))
        for (options, message) in [((1, 1, 10), "--population must be at least 2"),
                                   ((10, 0, 10), "--sample-size must be between 1 and --population (10), got 0"),
                                   ((10, 11, 10), "--sample-size must be between 1 and --population (10), got 11"),
                                   ((10, 3, 0), "--candidates must be at least 1, got 0")] {
            let o = RegularizedEvolution.Options(population: options.0, sampleSize: options.1, candidates: options.2)
            XCTAssertThrowsError(try o.validate()) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
            XCTAssertThrowsError(try RegularizedEvolution(options: o, seed: 0)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        XCTAssertNoThrow(try RegularizedEvolution(options: .init(population: 2, sampleSize: 2, candidates: 1), seed: 0))
        XCTAssertThrowsError(try RandomSampling(candidates: 0, seed: 0)) { XCTAssertTrue("\($0)".contains("--candidates must be at least 1")) }
        let single = try GenotypeSpace(steps: 1, ops: [.skipConnect])
        XCTAssertThrowsError(try RegularizedEvolution(space: single, options: .preset(.small, candidates: 5), seed: 0))
    }

    func testTheInitialPopulationIsRandomSearchsFirstCandidatesThenChildrenOfMembers() throws {
        var evolution = try RegularizedEvolution(options: .preset(.small, candidates: 60), seed: 5)
        var random = try RandomSampling(candidates: 60, seed: 5)
        let evolved = try drive(&evolution, workers: 1, fitness: sepConvFraction)
        let sampled = try drive(&random, workers: 1, fitness: sepConvFraction)
        XCTAssertEqual(evolved.count, 60)
        XCTAssertEqual(sampled.count, 60)
        XCTAssertEqual(Array(evolved.prefix(10)), Array(sampled.prefix(10)))
        // Synchronously, each later candidate is one decision away from a member of the population
        // it was drawn from, which holds the 10 results before it.
        let space = GenotypeSpace.darts
        for k in 10..<60 {
            XCTAssertTrue(evolved[(k - 10)..<k].contains { space.distance($0, evolved[k]) == 1 }, "candidate \(k)")
        }
        XCTAssertEqual(evolution.members.map(\.genotype), Array(evolved.suffix(10)))
        XCTAssertEqual(evolution.history.count, 60)
    }

    /// The must-show: over five seeds, the mean best fitness of evolution beats random search's by
    /// a wide margin in the same budget, and wins on every seed (both see the same noisy fitness; the
    /// means measured are 0.90 and 0.64, the bound on their gap 0.15; the seeds are fixed, so the
    /// test is deterministic).
    func testEvolutionBeatsRandomSearchOnASyntheticFitness() throws {
        let fitness = { (g: Genotype) in sepConvFraction(g) + noise(g, amplitude: 0.02) }
        var evolutionBest: [Double] = []
        var randomBest: [Double] = []
        for seed in UInt64(1)...5 {
            var evolution = try RegularizedEvolution(options: .preset(.small, candidates: 300), seed: seed)
            var random = try RandomSampling(candidates: 300, seed: seed)
            try drive(&evolution, workers: 4, fitness: fitness)
            try drive(&random, workers: 4, fitness: fitness)
            evolutionBest.append(sepConvFraction(evolution.best!.genotype))
            randomBest.append(sepConvFraction(random.best!.genotype))
        }
        let mean = { (v: [Double]) in v.reduce(0, +) / Double(v.count) }
        XCTAssertGreaterThan(mean(evolutionBest), mean(randomBest) + 0.15, "evolution \(evolutionBest), random \(randomBest)")
        XCTAssertTrue(zip(evolutionBest, randomBest).allSatisfy { $0 > $1 }, "evolution \(evolutionBest), random \(randomBest)")
    }

    func testProposalsRunAheadOfResultsAndTheBudgetCountsThoseInFlight() throws {
        var evolution = try RegularizedEvolution(options: .init(population: 3, sampleSize: 2, candidates: 7), seed: 2)
        // More proposals than P before any result: the population is empty, so all are samples.
        var proposed: [Genotype] = []
        for _ in 0..<5 { proposed.append(try XCTUnwrap(try evolution.propose())) }
        XCTAssertEqual(evolution.ledger.inFlight, proposed)
        try evolution.observe(proposed[3], fitness: 0.5)
        try evolution.observe(proposed[0], fitness: 0.25)
        XCTAssertEqual(evolution.members.map(\.genotype), [proposed[3], proposed[0]])
        // Now a child of a member.
        let child = try XCTUnwrap(try evolution.propose())
        XCTAssertTrue([proposed[3], proposed[0]].contains { GenotypeSpace.darts.distance($0, child) == 1 })
        _ = try XCTUnwrap(try evolution.propose())
        // 7 proposed, 5 in flight: the budget is spent.
        XCTAssertNil(try evolution.propose())
        XCTAssertEqual(evolution.ledger.inFlight.count, 5)
        for g in evolution.ledger.inFlight.reversed() { try evolution.observe(g, fitness: 0.1) }
        XCTAssertNil(try evolution.propose())
        XCTAssertEqual(evolution.history.count, 7)
        XCTAssertEqual(evolution.members.count, 3)
        XCTAssertEqual(evolution.best?.genotype, proposed[3])
    }

    func testFailedCandidatesStayInTheHistoryButOutOfThePopulation() throws {
        var evolution = try RegularizedEvolution(options: .init(population: 4, sampleSize: 2, candidates: 40), seed: 9)
        // Every candidate of the initial population fails: evolution keeps sampling until one succeeds.
        let initial = try drive(&evolution, workers: 1, results: 6) { _ in nil }
        XCTAssertEqual(initial.count, 6)
        XCTAssertTrue(evolution.members.isEmpty)
        XCTAssertNil(evolution.best)
        XCTAssertEqual(evolution.history.filter { $0.fitness == nil }.count, 6)
        // Then one in three fails.
        var count = 0
        try drive(&evolution, workers: 3) { g in
            count += 1
            return count % 3 == 0 ? nil : sepConvFraction(g)
        }
        XCTAssertEqual(evolution.history.count, 40)
        XCTAssertTrue(evolution.members.allSatisfy { $0.fitness != nil })
        XCTAssertEqual(evolution.members.count, 4)
        // The members are the four most recent successful results, oldest first.
        XCTAssertEqual(evolution.members, Array(evolution.history.filter { $0.fitness != nil }.suffix(4)))
        XCTAssertEqual(evolution.best?.fitness, evolution.history.compactMap(\.fitness).max())
    }

    func testResultsNobodyAskedForAndNonFiniteFitnessAreRefused() throws {
        var random = try RandomSampling(candidates: 3, seed: 1)
        let g = try XCTUnwrap(try random.propose())
        XCTAssertThrowsError(try random.observe(.dartsV2, fitness: 0.5)) { XCTAssertTrue("\($0)".contains("not in flight")) }
        XCTAssertThrowsError(try random.observe(g, fitness: .nan)) { XCTAssertTrue("\($0)".contains("not a finite number")) }
        try random.observe(g, fitness: 0.5)
        XCTAssertThrowsError(try random.observe(g, fitness: 0.5)) { XCTAssertTrue("\($0)".contains("not in flight")) }
    }

    /// Encoding after N results and decoding continues exactly as the uninterrupted run, with
    /// candidates in flight at the cut.
    func testSavedStateResumesIdentically() throws {
        func check<S: SearchStrategy & Equatable>(_ make: () throws -> S) throws {
            let fitness = { (g: Genotype) -> Double? in sepConvFraction(g) == 0.25 ? nil : sepConvFraction(g) + noise(g, amplitude: 0.05) }
            var uninterrupted = try make()
            let all = try drive(&uninterrupted, workers: 3, fitness: fitness)
            var first = try make()
            let before = try drive(&first, workers: 3, results: 37, fitness: fitness)
            XCTAssertEqual(first.ledgerInFlight.count, 2)
            let data = try JSONEncoder().encode(first)
            var resumed = try JSONDecoder().decode(S.self, from: data)
            XCTAssertEqual(resumed, first)
            // Continue as the driver would have: refill, then finish out of order as it does.
            var inFlight = first.ledgerInFlight
            var proposals = before
            var finished = 37
            while true {
                while inFlight.count < 3, let g = try resumed.propose() {
                    proposals.append(g)
                    inFlight.append(g)
                }
                guard !inFlight.isEmpty else { break }
                let g = inFlight.remove(at: finished % inFlight.count)
                try resumed.observe(g, fitness: fitness(g))
                finished += 1
            }
            XCTAssertEqual(proposals, all)
            XCTAssertEqual(resumed, uninterrupted)
            let sorted = JSONEncoder()
            sorted.outputFormatting = .sortedKeys
            XCTAssertEqual(try sorted.encode(resumed), try sorted.encode(uninterrupted))
        }
        try check { try RegularizedEvolution(options: .init(population: 8, sampleSize: 3, candidates: 90), seed: 4) }
        try check { try RandomSampling(candidates: 90, seed: 4) }
    }

    func testAResumeReissuesOnlyTheCandidatesInFlight() throws {
        var evolution = try RegularizedEvolution(options: .init(population: 4, sampleSize: 2, candidates: 12), seed: 3)
        // 8 results with 3 in flight: 10 proposed, 2 in flight at the cut.
        try drive(&evolution, workers: 3, results: 8, fitness: sepConvFraction)
        let lost = evolution.ledger.inFlight
        XCTAssertEqual(lost.count, 2)
        XCTAssertEqual(evolution.ledger.proposed, 10)
        var resumed = try JSONDecoder().decode(RegularizedEvolution.self, from: try JSONEncoder().encode(evolution))
        resumed.requeueInFlight()
        XCTAssertEqual(resumed.ledger.reissue, lost)
        XCTAssertEqual(try (0..<2).map { _ in try XCTUnwrap(try resumed.propose()) }, lost)
        XCTAssertEqual(resumed.ledger.proposed, 10)
        // Two new candidates are left in the budget.
        let last = try (0..<2).map { _ in try XCTUnwrap(try resumed.propose()) }
        XCTAssertNil(try resumed.propose())
        XCTAssertEqual(resumed.ledger.proposed, 12)
        for g in lost + last { try resumed.observe(g, fitness: 0.5) }
        XCTAssertEqual(resumed.history.count, 12)
        XCTAssertTrue(resumed.ledger.inFlight.isEmpty && resumed.ledger.reissue.isEmpty)
    }

    func testAnotherStrategysOrACorruptStateIsRefused() throws {
        var random = try RandomSampling(candidates: 5, seed: 1)
        try drive(&random, workers: 2, results: 3, fitness: sepConvFraction)
        let data = try JSONEncoder().encode(random)
        XCTAssertThrowsError(try JSONDecoder().decode(RegularizedEvolution.self, from: data)) {
            XCTAssertTrue("\($0)".contains("'random-sampling', not 'regularized-evolution'"), "\($0)")
        }
        var evolution = try RegularizedEvolution(options: .preset(.small, candidates: 5), seed: 1)
        try drive(&evolution, workers: 1, fitness: sepConvFraction)
        var json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(evolution)) as! [String: Any]
        json["population"] = [0, 9]
        XCTAssertThrowsError(try JSONDecoder().decode(RegularizedEvolution.self, from: try JSONSerialization.data(withJSONObject: json))) {
            XCTAssertTrue("\($0)".contains("inconsistent"), "\($0)")
        }
        // A ledger whose counts do not add up is refused by either strategy (its own decoding checks them).
        var randomJSON = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var ledger = randomJSON["ledger"] as! [String: Any]
        ledger["proposed"] = 6
        randomJSON["ledger"] = ledger
        XCTAssertThrowsError(try JSONDecoder().decode(RandomSampling.self, from: try JSONSerialization.data(withJSONObject: randomJSON))) {
            XCTAssertTrue("\($0)".contains("inconsistent strategy state: budget 5, 6 proposed"), "\($0)")
        }
        json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(evolution)) as! [String: Any]
        ledger = json["ledger"] as! [String: Any]
        ledger["budget"] = 0
        json["ledger"] = ledger
        XCTAssertThrowsError(try JSONDecoder().decode(RegularizedEvolution.self, from: try JSONSerialization.data(withJSONObject: json))) {
            XCTAssertTrue("\($0)".contains("inconsistent strategy state: budget 0"), "\($0)")
        }
        // A sound ledger round-trips with its keys unchanged.
        let sound = try JSONEncoder().encode(random.ledger)
        XCTAssertEqual(try JSONDecoder().decode(CandidateLedger.self, from: sound), random.ledger)
        let keys = (try JSONSerialization.jsonObject(with: sound) as! [String: Any]).keys.sorted()
        XCTAssertEqual(keys, ["budget", "history", "inFlight", "proposed", "reissue"])
    }
}

private extension SearchStrategy {
    /// The candidates in flight of either strategy under test.
    var ledgerInFlight: [Genotype] {
        if let s = self as? RegularizedEvolution { return s.ledger.inFlight }
        return (self as! RandomSampling).ledger.inFlight
    }
}
