import Foundation
import ArgumentParser
import Kernels
import Search

/// The nas-mpi command line.
@main
struct NasMPI: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "nas-mpi",
        abstract: "Differentiable architecture search (DARTS) on CPUs, as a plain process or an MPI job.",
        discussion: """
            Run a command under `mpirun -np N nas-mpi ...` to use N ranks; started directly it runs as one rank.
            """,
        version: version,
        subcommands: [SearchCommand.self, TrainCommand.self, EvaluateCommand.self, EvolveCommand.self, RLCommand.self, RandomCommand.self, FidelityCommand.self, ReportCommand.self, ExportCommand.self, Summary.self, Bench.self]
    )

    /// Parses the command line with negative values attached to their options (see `NegativeValues`).
    static func main() {
        if let message = BuildTarget.unsupportedMessage() {
            FileHandle.standardError.write(Data(("nas-mpi: error: " + message + "\n").utf8))
            Foundation.exit(1)
        }
        BLASKernelChoice.restartIfNeeded()
        let arguments = Array(CommandLine.arguments.dropFirst())
        _ = RunSupport.startTime  // --time-budget counts from the process start
        RunLogHeader.set(version: version, arguments: arguments)
        main(ResumeMode.normalised(NegativeValues.attached(WeightSharingAlias.rewritten(arguments))))
    }
}
