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

    func run() throws {
        let shape = try network.parsedInput() ?? [3, 32, 32]
        let config = SupernetConfig(channels: network.channels ?? 16, layers: network.layers ?? 8, inputShape: shape,
                                    classes: network.classes ?? 10, primitives: try network.parsedPrimitives() ?? Primitive.allCases)
        let net: SearchNetwork
        do { net = try SearchNetwork(config, seed: 0) } catch { throw ValidationError("\(error)") }
        let tape = Tape(recording: false)
        _ = try net.forward(Variable(Tensor(shape: [1] + shape)), ForwardContext(tape: tape, training: false))
        print("supernet: C=\(config.channels), \(config.layers) layers, input \(shape.map(String.init).joined(separator: "x")), \(config.classes) classes, \(config.primitives.count) primitives")
        print("parameters: \(net.state.parameterCount)")
        print("architecture parameters: \(net.alphasNormal.value.count + net.alphasReduce.value.count)")
        print("forward MACs: \(tape.multiplyAccumulates)")
    }
}
