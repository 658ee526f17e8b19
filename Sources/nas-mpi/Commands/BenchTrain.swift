import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi bench train`: evaluation-network training steps on random data.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time evaluation-network training steps (forward, backward, SGD) on random data.",
        discussion: """
            Each step is what `nas-mpi train` does per batch (the same code): forward with drop path \
            on every non-identity op and the auxiliary loss (weight 0.4) when the head is on, backward, \
            gradients averaged over ranks, clipping to norm 5, SGD with momentum 0.9 and weight decay \
            3e-4. Drop path stays at --drop-path (training ramps it up to that value). GFLOP/s uses the \
            analytic count of `nas-mpi train`'s log: a forward pass is 2 x MACs FLOPs per image, a \
            backward pass twice that, so a step is 3 x 2 x MACs x batch, the auxiliary head's MACs \
            included when it is on. Under mpirun, --batch is per rank and images/s counts all ranks.

            Presets (the issue's two rows; flags given override them):
              small  DARTS_V2, C=16, 8 layers, 3x32x32, batch 64, drop path 0.2, no auxiliary head
              paper  DARTS_V2, C=36, 20 layers, 3x32x32, batch 96, drop path 0.2, auxiliary head
            """
    )

    enum Preset: String, ExpressibleByArgument, CaseIterable {
        case small, paper
    }

    @Option(help: "Starting configuration: small or paper (see below).") var preset: Preset = .small
    @Option(help: "Genotype: DARTS_V1, DARTS_V2, or a genotype file (JSON or Python form).") var genotype = "DARTS_V2"
    @Option(help: "Initial channels C.") var channels: Int?
    @Option(help: "Cells; reduction cells at layers/3 and 2*layers/3.") var layers: Int?
    @Option(help: "Image shape CxHxW.") var input = "3x32x32"
    @Option(help: "Classes.") var classes = 10
    @Option(help: "Images per rank per batch.") var batch: Int?
    @Option(help: "Auxiliary head after cell 2*layers/3: true or false.") var auxiliary: Bool?
    @Option(help: "Drop-path probability.") var dropPath: Float?
    @Option(help: "Recompute cell activations in backward: none, first, all, auto, or N (the first N cells; as train --recompute).") var recompute: RecomputePolicy = .none
    @Option(help: "Timed steps (after the warm-up).") var steps = 5
    @Option(help: "Untimed warm-up steps.") var warmup = 1
    @Flag(help: "Print where step time goes, by op kind.") var profile = false
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        if let batch, batch < 2 { throw ValidationError("--batch must be at least 2, got \(batch)") }
        if let dropPath, !(dropPath >= 0 && dropPath < 1) { throw ValidationError("--drop-path must lie in [0, 1), got \(dropPath)") }
        guard steps >= 1, warmup >= 0 else { throw ValidationError("--steps must be at least 1 and --warmup at least 0") }
        guard classes >= 2 else { throw ValidationError("--classes must be at least 2, got \(classes)") }
        _ = try inputShape()
    }

    /// --input as [C, H, W].
    private func inputShape() throws -> [Int] {
        let parts = input.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 3, parts.allSatisfy({ $0 >= 1 && $0 <= NetworkOptions.maxImageSide }) else {
            throw ValidationError("--input expects CxHxW with positive integers, e.g. 3x32x32, got '\(input)'")
        }
        return parts
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) { try bench(comm) }
    }

    private func bench(_ comm: Communicator) throws {
        let threads = threading.apply()
        let shape = try inputShape()
        // The optimiser, clipping and auxiliary weight of `nas-mpi train` (the paper's).
        var config = TrainConfig.preset(.paper, genotype: try RunSupport.genotype(genotype), source: genotype)
        let paper = preset == .paper
        config.channels = channels ?? (paper ? 36 : 16)
        config.layers = layers ?? (paper ? 20 : 8)
        config.auxiliary = auxiliary ?? paper
        let batch = self.batch ?? (paper ? 96 : 64)
        let dropPath = self.dropPath ?? 0.2
        let network: EvalNetwork
        do {
            network = try EvalNetwork(config.networkConfig(inputShape: shape, classes: classes), genotype: config.genotype, seed: 1)
        } catch { throw ValidationError("\(error)") }
        network.recompute = recompute
        let averager = GradientAverager(comm)
        let optimizer = SGD(parameters: network.weights, learningRate: config.learningRate, momentum: config.momentum,
                            weightDecay: config.weightDecay)
        let trainingStep = EvalTrainingStep(network: network, optimizer: optimizer, averager: averager, gradClip: config.gradClip,
                                            auxiliaryWeight: config.auxiliaryWeight)
        let macs = network.multiplyAccumulates + network.auxiliaryMultiplyAccumulates
        let flopsPerStep = 3 * 2 * Double(macs) * Double(batch)

        var g = RandomGenerator(seed: UInt64(7 + comm.rank), stream: .synthetic)
        var x = Tensor(shape: [batch] + shape)
        g.fillNormal(&x)
        let data = Batch(images: x, labels: (0..<batch).map { _ in g.int(below: classes) })
        let sampler = DropPathSampler(probability: dropPath, generator: RandomGenerator(seed: UInt64(11 + comm.rank), stream: .dropout))
        guard let m = try StepMeasurement.run(comm, averager: averager, threads: threads, steps: steps, warmup: warmup, profile: profile, step: {
            _ = try trainingStep(data, dropPath: sampler)
        }) else { return }
        let s = shape.map(String.init).joined(separator: "x")
        let parameters = network.parameterCountWithoutAuxiliary
        print("nas-mpi bench train: \(genotype), C=\(config.channels), \(config.layers) layers, input \(s), batch \(batch) per rank, drop path \(dropPath), auxiliary \(config.auxiliary ? "on" : "off"), recompute \(recompute) (cells \(Self.list(network.recomputedCells(batch: batch)))), \(parameters) parameters, \(comm.size) rank(s) x \(threads) thread(s)")
        print("forward MACs per image: \(network.multiplyAccumulates)\(config.auxiliary ? " + \(network.auxiliaryMultiplyAccumulates) auxiliary head" : ""); analytic work per step: \(String(format: "%.2f", flopsPerStep / 1e9)) GFLOP per rank (3 x 2 x MACs x batch)")
        m.print(flopsPerStep: flopsPerStep, imagesPerStep: batch * comm.size, ranks: comm.size)
    }

    static func list(_ cells: Set<Int>) -> String {
        cells.isEmpty ? "none" : cells.sorted().map(String.init).joined(separator: ",")
    }
}
