import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi evaluate`: test loss and accuracy of a trained network.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Report the test loss and accuracy of a training run's checkpoint.",
        discussion: """
            Reads the run's config.json for the network and data, and its best.bin (or --checkpoint last, or \
            a checkpoint path). --weights loads a safetensors file instead (as written by `nas-mpi export`). \
            --recalibrate-bn N recomputes the BatchNorm statistics on N training batches (cumulative average, \
            no augmentation) before testing. --test-data FILE tests on another CSV file than the run's.
            """
    )

    @Option(name: .customLong("run"), help: "The training run directory.") var runPath: String
    @Option(help: "best, last, or a checkpoint file.") var checkpoint = "best"
    @Option(help: "A safetensors file to load instead of a checkpoint.") var weights: String?
    @Option(help: "Recompute BatchNorm statistics on this many training batches first (0: no).") var recalibrateBn = 0
    @Option(help: "Images per evaluation batch (default: the run's batch size).") var batchSize: Int?
    @OptionGroup var testDataOptions: TestDataOptions
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        guard recalibrateBn >= 0 else { throw ValidationError("--recalibrate-bn must be at least 0") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) {
            threading.apply()
            let dir = RunDirectory(runPath)
            var config = try RunSupport.savedConfig(comm) { try Trainer.savedConfig(dir) }
            config.data = try testDataOptions.apply(to: config.data)
            let (train, test, heldOut) = try config.loadData()
            let net = try EvalNetwork(config.networkConfig(inputShape: train.imageShape, classes: train.classes),
                                      genotype: config.genotype, seed: config.seed)
            let source: URL
            let file: CheckpointFile
            if let weights {
                source = URL(fileURLWithPath: weights)
                file = try Safetensors.read(source)
            } else {
                source = checkpoint == "best" ? dir.file("best.bin") : checkpoint == "last" ? dir.checkpoint : URL(fileURLWithPath: checkpoint)
                file = try CheckpointFile.read(from: source)
                if let g = file.metadata["genotype"]?.string, g != config.genotype.pythonDescription {
                    throw RunError("\(source.path) was trained on another genotype than \(dir.config.path) describes")
                }
            }
            do { try net.state.restore(from: file) } catch {
                throw RunError("\(source.path) does not fit the network of \(dir.config.path): \(error)")
            }
            let batch = batchSize ?? config.batchSize
            if recalibrateBn > 0 {
                for (_, s) in net.state.statistics { s.reset(); s.cumulativeAverage = true }
                var g = RandomGenerator(seed: config.seed, stream: .dataOrder)
                let order = g.permutation(train.count)
                for k in 0..<recalibrateBn {
                    let idx = (0..<batch).map { order[(k * batch + $0) % order.count] }
                    let b = train.batch(idx, augment: false, generator: &g)
                    _ = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
                }
                for (_, s) in net.state.statistics { s.cumulativeAverage = false }
                try net.state.averageRunningStatistics(comm)
            }
            let (loss, accuracy) = try Search.evaluate(test, batchSize: batch, comm: comm) { b in
                try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
            }
            if comm.rank == 0 {
                print("weights: \(source.path)\(recalibrateBn > 0 ? ", BatchNorm statistics recomputed on \(recalibrateBn) batches" : "")")
                print("test images: \(test.count)\(heldOut ? " (a held-out tenth of the training data)" : config.data.testPath.map { " (\($0))" } ?? "")")
                print(String(format: "test loss: %.4f", loss))
                print(String(format: "test accuracy: %.2f%%", 100 * accuracy))
            }
        }
    }
}
