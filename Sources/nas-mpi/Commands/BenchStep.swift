import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi bench step`: full DARTS search steps on random data.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time full DARTS search steps (architect step + weight step) on random data.",
        discussion: """
            Each step is what `nas-mpi search` does: an architecture step on a validation batch (first or \
            second order), then a weight step on a training batch with gradient clipping and the SGD \
            update, gradients averaged over ranks. GFLOP/s uses the analytic count of `nas-mpi summary`: \
            a forward pass is 2 x MACs FLOPs per image, a backward pass twice that; a first-order step is \
            2 forward+backward passes, a second-order step 5. Under mpirun, --batch is per rank (weak \
            scaling) and images/s counts all ranks.
            """
    )

    @OptionGroup var network: NetworkOptions
    @Option(help: "Images per rank per batch.") var batch = 32
    @Option(help: "Architecture gradient order: 1 or 2.") var order = 1
    @Option(help: "Search method, as `nas-mpi search --method` (the same step code `nas-mpi search` runs).") var method: SearchMethodKind = .darts
    @Option(help: "PC-DARTS: 1/K of each edge's channels go through its ops.") var partialChannels = 4
    @Option(help: "Timed steps (after the warm-up).") var steps = 5
    @Option(help: "Untimed warm-up steps.") var warmup = 1
    @Flag(help: "Print where step time goes, by op kind.") var profile = false
    @Option(help: "Recompute cell activations: none, first, all, auto, or N (the first N cells).") var recompute: RecomputePolicy = .auto
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        guard batch >= 2 else { throw ValidationError("--batch must be at least 2, got \(batch)") }
        guard order == 1 || order == 2 else { throw ValidationError("--order must be 1 or 2, got \(order)") }
        guard steps >= 1, warmup >= 0 else { throw ValidationError("--steps must be at least 1 and --warmup at least 0") }
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) { try bench(comm) }
    }

    private func bench(_ comm: Communicator) throws {
        let threads = threading.apply()
        let shape = try network.parsedInput() ?? [3, 32, 32]
        var config = SearchConfig.preset(.paper)
        config.method = method
        config.channels = network.channels ?? 16
        config.layers = network.layers ?? 8
        config.primitives = try network.parsedPrimitives() ?? Primitive.darts
        config.order = order
        config.partialChannels = partialChannels
        config.recompute = recompute
        config.seed = 1
        let classes = network.classes ?? 10
        let searchMethod: SearchMethod
        do {
            try config.validate()
            searchMethod = try method.make(config, inputShape: shape, classes: classes, averager: GradientAverager(comm))
        } catch { throw ValidationError("\(error)") }
        let net = searchMethod.network
        let averager = searchMethod.training.averager
        let macTape = Tape(recording: false)
        _ = try net.forward(Variable(Tensor(shape: [1] + shape)), ForwardContext(tape: macTape, training: false))
        let macs = macTape.multiplyAccumulates
        let passes = order == 1 ? 2.0 : 5.0
        let flopsPerStep = passes * 3 * 2 * Double(macs) * Double(batch)

        var g = RandomGenerator(seed: UInt64(7 + comm.rank), stream: .synthetic)
        func randomBatch() -> Batch {
            var x = Tensor(shape: [batch] + shape)
            g.fillNormal(&x)
            return Batch(images: x, labels: (0..<batch).map { _ in g.int(below: classes) })
        }
        let (train, val) = (randomBatch(), randomBatch())
        // The search's own step (architecture step, then weight step), past any warm-up.
        func step() throws {
            // `control` given: without it the call binds statically to the protocol extension's
            // DARTS step, not to a method's own step (SDARTS, P-DARTS, random-ws).
            _ = try searchMethod.step(train: train, validation: val, epoch: config.warmupEpochs, learningRate: 0.025,
                                      control: StepControl())
        }
        guard let m = try StepMeasurement.run(comm, averager: averager, threads: threads, steps: steps, warmup: warmup,
                                              profile: profile, step: step) else { return }
        let s = shape.map(String.init).joined(separator: "x")
        let recomputed = net.recomputedCells(batch: batch).sorted()
        print("nas-mpi bench step: \(method.rawValue)\(method == .pcDarts ? " K=\(partialChannels)" : ""), C=\(config.channels), \(config.layers) layers, input \(s), batch \(batch) per rank, order \(order), \(comm.size) rank(s) x \(threads) thread(s), recompute \(recompute) (cells \(recomputed.isEmpty ? "none" : recomputed.map(String.init).joined(separator: ",")))")
        print("forward MACs per image: \(macs); analytic work per step: \(String(format: "%.2f", flopsPerStep / 1e9)) GFLOP per rank")
        m.print(flopsPerStep: flopsPerStep, imagesPerStep: 2 * batch * comm.size, ranks: comm.size)
    }
}
