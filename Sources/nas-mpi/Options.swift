import ArgumentParser
import Distributed
import Kernels

/// Flags shared by every command that computes.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Intra-op threads per rank (default: cores on this node / ranks on this node).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    /// Applies the thread count to the kernels and returns it.
    @discardableResult
    func apply() -> Int {
        let n = threads ?? MPIEnvironment.defaultThreads
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
