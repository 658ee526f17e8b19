import ArgumentParser

/// `nas-mpi bench ...`: measurements that the documentation quotes.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure kernel and communication speed.",
        subcommands: [BenchStep.self, BenchTrain.self, BenchKernels.self, BenchAllreduce.self]
    )
}
