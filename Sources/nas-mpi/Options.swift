import ArgumentParser
import Distributed
import Foundation
import Kernels

/// Flags shared by every command that computes.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Intra-op threads per rank (default: cores on this node / ranks on this node).")
    var threads: Int?

    /// The most threads a rank may start: 4 per core of this node, at least 8, at most 256. More
    /// only slows the kernels down (and 100000 threads take minutes just to start).
    static var maximum: Int { max(8, min(256, 4 * ProcessInfo.processInfo.activeProcessorCount)) }

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let threads, threads > Self.maximum {
            throw ValidationError("--threads \(threads) is more than \(Self.maximum), 4 per core of the \(ProcessInfo.processInfo.activeProcessorCount) cores on this node; leave it out to use one thread per core")
        }
    }

    /// Applies the thread count to the kernels and returns it; warns (once per node) when a given
    /// --threads makes the ranks on this node run more threads than it has cores.
    @discardableResult
    func apply() -> Int {
        let n = threads ?? MPIEnvironment.defaultThreads
        let cores = ProcessInfo.processInfo.activeProcessorCount, ranks = MPIEnvironment.localRanks
        let localRank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_RANK"] ?? ProcessInfo.processInfo.environment["MPI_LOCALRANKID"] ?? "0"
        // Only a count the user gave: the default is already the best that 8 ranks on 2 cores can do.
        if threads != nil, n * ranks > cores, localRank == "0" {
            let who = ranks > 1 ? "--threads \(n) x \(ranks) ranks on this node" : "--threads \(n)"
            FileHandle.standardError.write(Data("warning: \(who) exceeds the \(cores) cores of this node; the threads will take turns, which is slower than --threads \(max(1, cores / ranks))\n".utf8))
        }
        Parallel.setThreads(n)
        Allocator.configureForTraining()
        return n
    }
}

/// Parses a comma-separated list of positive integers ("16,32,64").
func parsePositiveList(_ text: String, flag: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 > 0 }) else {
        throw ValidationError("\(flag) expects comma-separated positive integers, got '\(text)'")
    }
    return values
}

import Foundation
