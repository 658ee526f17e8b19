import ArgumentParser
import Distributed
import Foundation
import Search

/// `nas-mpi export`: a run's weights as safetensors with the reference state-dict names.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a run's weights as safetensors, named as the reference PyTorch modules' state_dict.",
        discussion: """
            A training run exports its evaluation network (load with model.load_state_dict(load_file(f), strict=True) \
            into the reference NetworkCIFAR); a search run exports the supernet plus alphas_normal and alphas_reduce \
            (pop those two into model.alphas_normal / model.alphas_reduce, then load the rest strictly).
            """
    )

    @Option(name: .customLong("run"), help: "The run directory (search or train).") var runPath: String
    @Option(help: "best, last, or a checkpoint file (training runs; search runs have only the last).") var checkpoint = "last"
    @Option(help: "Output .safetensors file.") var out: String

    func validate() throws {
        try RunSupport.checkOut(out, naming: "the .safetensors file to write")
    }

    func run() throws {
        let dir = RunDirectory(runPath)
        let path = checkpoint == "best" ? dir.file("best.bin") : checkpoint == "last" ? dir.checkpoint : URL(fileURLWithPath: checkpoint)
        let file = try CheckpointFile.read(from: path)
        let target = URL(fileURLWithPath: out)
        switch file.metadata["kind"]?.string {
        case "train":
            let config = try Trainer.savedConfig(dir)
            let train = try config.loadData().train
            let net = try EvalNetwork(config.networkConfig(inputShape: train.imageShape, classes: train.classes),
                                      genotype: config.genotype, seed: config.seed)
            try net.state.restore(from: file)
            try Safetensors.write(net.state, metadata: ["genotype": config.genotype.pythonDescription, "format": "pt"], to: target)
            print("exported \(net.state.parameters.count + 3 * net.state.statistics.count) tensors (\(net.state.parameterCount) parameters in \(net.state.parameters.count) tensors, buffers of \(net.state.statistics.count) BatchNorm layers) to \(target.path)")
        case "search":
            let config = try Searcher.savedConfig(dir)
            let train = try config.data.load().train
            let method = try config.method.make(config, inputShape: train.imageShape, classes: train.classes,
                                                averager: GradientAverager(LocalCommunicator()))
            // The method may rebuild its supernet for the checkpoint (P-DARTS: the stage's).
            try method.restoreForEvaluation(from: file)
            let net = method.network
            // Every architecture parameter, by name (alphas, and betas for PC-DARTS).
            let architecture = try net.architecture.map { ($0.name, try file.tensor($0.name, shape: $0.shape)) }
            try Safetensors.write(net.state, extra: architecture, metadata: ["format": "pt", "method": config.method.rawValue], to: target)
            print("exported the supernet: \(net.state.parameters.count + 3 * net.state.statistics.count + architecture.count) tensors (\(net.state.parameterCount) parameters in \(net.state.parameters.count) tensors, buffers of \(net.state.statistics.count) BatchNorm layers, \(architecture.map(\.0).joined(separator: ", "))) to \(target.path)")
        default:
            throw RunError("\(path.path) is neither a search nor a training checkpoint")
        }
    }
}
