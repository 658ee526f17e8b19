import Distributed
import Foundation
import Kernels
import Search
import XCTest
import _TestSupport

/// `--channel-schedule`: widening keeps the supernet's function (eval and training mode), carries
/// the alphas and the optimisers' state over, checkpoints record the width and a run resumed on
/// either side of a widening is bit-identical; the schedule and its flags are checked.
final class ChannelScheduleTests: XCTestCase {
    private func config(_ method: SearchMethodKind = .darts, schedule: String = "3@0,6@1,8@2") throws -> SearchConfig {
        var c = SearchConfig.preset(.quick)
        c.method = method
        c.data = DataSource(kind: .synthetic, imageShape: [1, 8, 8])
        c.data.syntheticCount = 64
        c.layers = 3
        c.batchSize = 8
        c.epochs = 3
        c.seed = 7
        c.channelSchedule = try ChannelSchedule(parsing: schedule)
        c.channels = c.channelSchedule!.finalChannels
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

    private func loss(_ net: SearchNetwork, _ b: Batch, training: Bool) throws -> Float {
        try net.loss(b.images, b.labels, ForwardContext(tape: Tape(recording: false), training: training, updateStatistics: false))
            .loss.value.scalars[0]
    }

    /// Trains a few steps (weights, BatchNorm statistics, alphas, optimiser state all away from
    /// their initial values) at epoch 0.
    private func trained(_ m: SearchMethod, steps: Int = 3) throws {
        for s in 0..<steps {
            _ = try m.step(train: try batch(seed: UInt64(10 + s)), validation: try batch(seed: UInt64(20 + s)), epoch: 0,
                           learningRate: 0.05, control: StepControl(step: s))
        }
    }

    func testWideningKeepsTheLossInEvalAndTrainingModeForEveryEdgeType() throws {
        // Every op of the reference table, an odd width, reduction cells (FactorizedReduce
        // preprocessing and skips); DARTS, op dropout edges (sdarts) and DARTS-'s auxiliary skip.
        for method in [SearchMethodKind.darts, .sdarts, .dartsMinus] {
            var c = try config(method)
            c.primitives = Primitive.darts + [.sepConv7x7, .conv7x1_1x7]
            if method == .sdarts { c.opDropout = try OpDropoutRates(parsing: "skip_connect=0.2") }
            let m = try make(c)
            try trained(m)
            let old = m.network
            XCTAssertEqual(old.config.channels, 3)
            let b = try batch(seed: 99)
            let (evalBefore, trainBefore) = (try loss(old, b, training: false), try loss(old, b, training: true))
            let alphas = old.architecture.map(\.value)
            let adam = (m.training.architect.optimizer.firstMoments, m.training.architect.optimizer.secondMoments,
                        m.training.architect.optimizer.stepCount)
            try m.training.widen(to: 8)
            let wide = m.network
            XCTAssertFalse(wide === old)
            XCTAssertTrue(m.training.network === wide)
            XCTAssertEqual(wide.config.channels, 8)
            XCTAssertEqual(wide.weights.count, old.weights.count)
            let (evalAfter, trainAfter) = (try loss(wide, b, training: false), try loss(wide, b, training: true))
            XCTAssertEqual(evalAfter, evalBefore, accuracy: 1e-5 * max(1, abs(evalBefore)), "\(method.rawValue): eval-mode loss")
            XCTAssertEqual(trainAfter, trainBefore, accuracy: 1e-5 * max(1, abs(trainBefore)), "\(method.rawValue): training-mode loss")
            // The alphas are the same variables with the same values; Adam's state is unchanged.
            XCTAssertTrue(zip(wide.architecture, old.architecture).allSatisfy { $0 === $1 })
            XCTAssertEqual(wide.architecture.map(\.value), alphas)
            XCTAssertEqual(m.training.architect.optimizer.firstMoments, adam.0)
            XCTAssertEqual(m.training.architect.optimizer.secondMoments, adam.1)
            XCTAssertEqual(m.training.architect.optimizer.stepCount, adam.2)
            XCTAssertTrue(m.training.architect.model === wide)
            print(String(format: "%@: loss before widening C=3 -> 8: eval %.7f, training %.7f; after: eval %.7f, training %.7f",
                         method.rawValue, evalBefore, trainBefore, evalAfter, trainAfter))
        }
    }

    func testMomentumCarriesOverAtTheOldPositionsAndNewEntriesAreZero() throws {
        let m = try make(try config())
        try trained(m)
        let oldWeights = m.network.weights
        let oldBuffers = try oldWeights.map { try m.training.optimizer.momentumBuffer(of: $0) }
        try m.training.widen(to: 6)
        let newWeights = m.network.weights
        var checked = 0
        for (k, (old, buffer)) in zip(oldWeights, oldBuffers).enumerated() {
            let new = newWeights[k]
            XCTAssertEqual(new.name, old.name)
            guard let buffer else {
                XCTAssertNil(try m.training.optimizer.momentumBuffer(of: new), old.name)
                continue
            }
            let carried = try XCTUnwrap(try m.training.optimizer.momentumBuffer(of: new), old.name)
            XCTAssertEqual(carried.shape, new.shape)
            // The old entries, and zeros: the same multiset of non-zero values.
            XCTAssertEqual(carried.scalars.filter { $0 != 0 }.sorted(), buffer.scalars.filter { $0 != 0 }.sorted(), old.name)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 10)
    }

    func testNewChannelsAreSilentAndOldValuesKeepTheirPlaces() throws {
        let a = ChannelLayout.halves(6, 10)
        XCTAssertEqual(a.positions, [0, 1, 2, 5, 6, 7])
        XCTAssertEqual(a.newChannels, [3, 4, 8, 9])
        XCTAssertEqual(ChannelLayout.halves(3, 4).positions, [0, 2, 3])
        XCTAssertEqual(ChannelLayout.blocks(.halves(2, 4), count: 2).positions, [0, 2, 4, 6])
        // A 1x1 convolution [2, 2] widened to [4, 4] (layout halves): new rows zero, new columns fresh.
        let old = Variable(try Tensor(shape: [2, 2, 1, 1], scalars: [1, 2, 3, 4]))
        let new = Variable(Tensor(shape: [4, 4, 1, 1], repeating: 9))
        let w = WeightWidening(old: old, new: new, rows: .halves(2, 4), columns: .halves(2, 4), silentRows: true)
        XCTAssertEqual(w.apply(old.value, onto: new.value).scalars, [1, 9, 2, 9,
                                                                    0, 0, 0, 0,
                                                                    3, 9, 4, 9,
                                                                    0, 0, 0, 0])
    }

    func testCheckpointRecordsTheWidthAndResumeOnEitherSideOfAWideningIsBitIdentical() throws {
        let a = try make(try config())
        try trained(a, steps: 2)
        var before = CheckpointFile(metadata: [:])
        a.addState(to: &before)
        XCTAssertEqual(before.metadata["channels"]?.int, 3)
        _ = try a.step(train: try batch(seed: 30), validation: try batch(seed: 31), epoch: 1, learningRate: 0.04)
        XCTAssertEqual(a.network.config.channels, 6, "epoch 1 starts the C=6 stage")
        var after = CheckpointFile(metadata: [:])
        a.addState(to: &after)
        XCTAssertEqual(after.metadata["channels"]?.int, 6)
        _ = try a.step(train: try batch(seed: 32), validation: try batch(seed: 33), epoch: 2, learningRate: 0.03)
        var end = CheckpointFile(metadata: [:])
        a.addState(to: &end)

        // Resumed before the widening: the restored C=3 supernet widens at epoch 1's first step.
        let b = try make(try config())
        try b.restoreState(from: before)
        XCTAssertEqual(b.network.config.channels, 3)
        _ = try b.step(train: try batch(seed: 30), validation: try batch(seed: 31), epoch: 1, learningRate: 0.04)
        // Resumed after it: the restore widens to the checkpoint's C=6.
        let c = try make(try config())
        XCTAssertEqual(c.network.config.channels, 3)
        try c.restoreState(from: after)
        XCTAssertEqual(c.network.config.channels, 6)
        XCTAssertTrue(c.training.network === c.network)
        for m in [b, c] {
            _ = try m.step(train: try batch(seed: 32), validation: try batch(seed: 33), epoch: 2, learningRate: 0.03)
            XCTAssertEqual(m.network.config.channels, 8)
            var f = CheckpointFile(metadata: [:])
            m.addState(to: &f)
            XCTAssertEqual(f.tensors.map(\.name), end.tensors.map(\.name))
            for ((name, x), (_, y)) in zip(f.tensors, end.tensors) { XCTAssertEqual(x, y, name) }
            XCTAssertEqual(f.metadata["channels"]?.int, 8)
        }
    }

    func testSearchRunInterruptedAroundTheWideningsResumesBitIdentically() throws {
        var c = try config(schedule: "2@0,4@1,6@2")
        c.epochs = 3
        let root = try temporaryDirectory(self)
        let whole = RunDirectory(root.appendingPathComponent("whole").path)
        let w = try Searcher(config: c, directory: whole, resume: false, threads: 1)
        w.log = { _ in }
        guard case .finished(let genotype) = try w.run() else { return XCTFail("the uninterrupted run did not finish") }
        XCTAssertEqual(w.network.config.channels, 6)
        let reference = try CheckpointFile.read(from: whole.checkpoint)
        // Stops: mid-epoch before the first widening, at the end of the epoch before it (the
        // checkpoint of the narrow supernet), and between the two parts of the step that widened
        // (C=4, then C=6: the checkpoint holds the new width and the step's weight half is left).
        let stops: [(String, (Searcher, Int) -> Bool)] = [
            ("question 3", { _, asked in asked >= 3 }),
            ("question 10", { _, asked in asked >= 10 }),
            ("first question at C=4", { s, _ in s.network.config.channels == 4 }),
            ("first question at C=6", { s, _ in s.network.config.channels == 6 }),
        ]
        var widths: Set<Int> = []
        for (k, (stopAt, stop)) in stops.enumerated() {
            let dir = RunDirectory(root.appendingPathComponent("cut-\(k)").path)
            let a = try Searcher(config: c, directory: dir, resume: false, threads: 1)
            a.log = { _ in }
            var asked = 0
            a.stopRequested = { [unowned a] in asked += 1; return stop(a, asked) ? SIGTERM : nil }
            XCTAssertEqual(try a.run(), .interrupted(signal: SIGTERM))
            let cut = try CheckpointFile.read(from: dir.checkpoint)
            widths.insert(try XCTUnwrap(cut.metadata["channels"]?.int))
            let b = try Searcher(config: c, directory: dir, resume: true, threads: 1)
            b.log = { _ in }
            XCTAssertEqual(try b.run(), .finished(genotype), "stopped at \(stopAt)")
            let x = try CheckpointFile.read(from: dir.checkpoint)
            XCTAssertEqual(x.tensors.map(\.name), reference.tensors.map(\.name))
            for ((name, p), (_, q)) in zip(x.tensors, reference.tensors) { XCTAssertEqual(p, q, "\(name), stopped at \(stopAt)") }
            XCTAssertEqual(b.stateHash(), w.stateHash())
        }
        XCTAssertEqual(widths, [2, 4, 6], "stops on both sides of each widening")
    }

    func testExportedNarrowOrWideFilesLoadForEvaluation() throws {
        let a = try make(try config())
        try trained(a)
        try a.training.widen(to: 6)
        // A file without the width in its metadata (a safetensors export): the stem tells it.
        var file = CheckpointFile(metadata: [:])
        a.network.state.add(to: &file)
        for v in a.network.architecture { file.add(v.name, v.value) }
        let b = try make(try config())
        try b.restoreForEvaluation(from: file)
        XCTAssertEqual(b.network.config.channels, 6)
        let x = try batch(seed: 5)
        XCTAssertEqual(try loss(b.network, x, training: false), try loss(a.network, x, training: false))
    }

    func testScheduleAndFlagsAreChecked() throws {
        let s = try ChannelSchedule(parsing: "4@0, 8@10,16@20")
        XCTAssertEqual(s.widths, [4, 8, 16])
        XCTAssertEqual(s.description, "4@0,8@10,16@20")
        XCTAssertEqual([0, 9, 10, 19, 20, 49].map(s.channels(at:)), [4, 4, 8, 8, 16, 16])
        XCTAssertEqual(s.wideningEpochs, [10, 20])
        let json = try JSONEncoder().encode(s)
        XCTAssertEqual(String(decoding: json, as: UTF8.self), "\"4@0,8@10,16@20\"")
        XCTAssertEqual(try JSONDecoder().decode(ChannelSchedule.self, from: json), s)
        func message(_ text: String) -> String {
            do { _ = try ChannelSchedule(parsing: text); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message("4@0,8").contains("C@EPOCH pairs"))
        XCTAssertTrue(message("4@0,x@3").contains("C@EPOCH pairs"))
        XCTAssertTrue(message("").contains("C@EPOCH pairs"))
        XCTAssertTrue(message("4@1,8@3").contains("start at epoch 0"))
        XCTAssertTrue(message("4@0,8@3,16@3").contains("epochs must increase"))
        XCTAssertTrue(message("8@0,4@3").contains("widths must increase"))
        XCTAssertTrue(message("0@0,4@3").contains("at least 1"))
        func invalid(_ c: SearchConfig) -> String {
            do { try c.validate(); return "" } catch { return "\(error)" }
        }
        XCTAssertEqual(invalid(try config()), "")
        XCTAssertTrue(invalid(try config(schedule: "3@0,6@3")).contains("beyond the run's 3 epochs"))
        var c = try config()
        c.channels = 16
        XCTAssertTrue(invalid(c).contains("the last width 8 is the run's --channels, which is 16"))
        for method in [SearchMethodKind.pcDarts, .pdarts, .randomWS, .enas] {
            var m = try config()
            m.method = method
            if method == .pcDarts { m.partialChannels = 1 }
            if method == .pdarts { m.pdarts = PDARTSSettings(stages: [3], stageOps: [8], skipDropout: [0], maxSkipConnections: 2) }
            XCTAssertTrue(invalid(m).contains("is not supported"), "\(method.rawValue): \(invalid(m))")
        }
        XCTAssertTrue(invalid(try config(.sdarts)).isEmpty)
        XCTAssertTrue(invalid(try config(.dartsMinus)).isEmpty)
    }
}
