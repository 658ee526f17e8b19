import ArgumentParser
import Kernels
import Search

/// `nas-mpi summary`: parameter count and forward MACs of a supernet configuration.
struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the parameter count and forward multiply-accumulates of a network.",
        discussion: "MACs are those of convolutions and linear layers for one image, counted by running a forward pass."
    )

    @OptionGroup var network: NetworkOptions
    @Option(help: "Summarise the evaluation network of this genotype (DARTS_V2, a file) instead of the supernet; defaults C=36, 20 layers.")
    var genotype: String?
    @Flag(help: "With --genotype: include the auxiliary head (parameters then counts it).") var auxiliary = false

    func validate() throws {
        if auxiliary && genotype == nil { throw ValidationError("--auxiliary applies to --genotype (the evaluation network)") }
    }

    func run() throws {
        let shape = try network.parsedInput() ?? [3, 32, 32]
        try MemoryEstimate.summary(channels: network.channels ?? (genotype == nil ? 16 : 36), layers: network.layers ?? (genotype == nil ? 8 : 20),
                                   inputShape: shape, classes: network.classes ?? 10)
            .check(advice: "use a smaller --input, --channels or --layers")
        if let genotype {
            let g = try RunSupport.genotype(genotype)
            let config = EvalNetworkConfig(channels: network.channels ?? 36, layers: network.layers ?? 20, inputShape: shape,
                                           classes: network.classes ?? 10, auxiliary: auxiliary)
            let net: EvalNetwork
            do { net = try EvalNetwork(config, genotype: g, seed: 0) } catch { throw ValidationError("\(error)") }
            let tape = Tape(recording: false)
            _ = try net.forward(Variable(Tensor(shape: [1] + shape)), ForwardContext(tape: tape, training: false))
            print("evaluation network of \(genotype): C=\(config.channels), \(config.layers) layers, input \(shape.map(String.init).joined(separator: "x")), \(config.classes) classes")
            print("parameters: \(net.state.parameterCount)")
            if auxiliary { print("parameters without auxiliary head: \(net.parameterCountWithoutAuxiliary)") }
            print("forward MACs: \(tape.multiplyAccumulates)")
            return
        }
        let config = SupernetConfig(channels: network.channels ?? 16, layers: network.layers ?? 8, inputShape: shape,
                                    classes: network.classes ?? 10, primitives: try network.parsedPrimitives() ?? Primitive.darts)
        let net: SearchNetwork
        do { net = try SearchNetwork(config, seed: 0) } catch { throw ValidationError("\(error)") }
        let tape = Tape(recording: false)
        _ = try net.forward(Variable(Tensor(shape: [1] + shape)), ForwardContext(tape: tape, training: false))
        print("supernet: C=\(config.channels), \(config.layers) layers, input \(shape.map(String.init).joined(separator: "x")), \(config.classes) classes, \(config.primitives.count) primitives")
        print("parameters: \(net.state.parameterCount)")
        print("architecture parameters: \(net.architecture.reduce(0) { $0 + $1.value.count })")
        print("forward MACs: \(tape.multiplyAccumulates)")
    }
}
