import Distributed
import Foundation
import Kernels

/// The supernet side of a fidelity study: a search's supernet restored from one of its
/// checkpoints (checkpoint.bin, or an epoch's epochs/epoch-NNN.bin), each genotype's path put on
/// it, BatchNorm recomputed for that path, then scored on the search's validation half
/// (`SupernetScoring`). Every rank runs it together, data parallel, and gets the same scores.
///
/// The data are loaded once; each checkpoint gets a freshly built supernet, so checkpoints of
/// different widths (`--channel-schedule`) each restore into their own.
public struct FidelityScorer {
    public let config: FidelityConfig
    public let search: SearchConfig
    public let searchDirectory: RunDirectory
    public let comm: Communicator
    private let weightsHalf: ImageDataset
    private let validation: ImageDataset
    private let end: SearchEnd

    /// - Parameters:
    ///   - directory: the study's run directory (scoring writes nothing there).
    ///   - log: a line for the log (called on every rank; rank 0 writes it).
    public init(config: FidelityConfig, search: SearchConfig, searchDirectory: RunDirectory, directory: RunDirectory,
                comm: Communicator, log: @escaping (String) -> Void) throws {
        self.config = config
        self.search = search
        self.searchDirectory = searchDirectory
        self.comm = comm
        (weightsHalf, validation, _) = try search.loadSplits()
        let batch = max(comm.size, search.batchSize / comm.size * comm.size)
        end = SearchEnd(trainSet: weightsHalf, validationSet: validation, batchSize: batch, comm: comm, directory: directory, log: log)
    }

    /// Validation images each genotype is scored on.
    public var images: Int { config.scoreBatches.map { $0 * end.batchSize } ?? validation.count }

    private func settings(count: Int) -> WeightSharingSettings {
        WeightSharingSettings(samples: count, top: count, batches: config.scoreBatches ?? 1, bnBatches: config.bnBatches)
    }

    /// The accuracy of each genotype on the supernet of `checkpoint`, and the checkpoint's epoch.
    /// - Parameters:
    ///   - label: how the log names the weights ("the weights of epoch 3").
    ///   - stop: asked before each genotype, on every rank together (it must be collective, as
    ///     `FarmStop.agree`): a stop there abandons this checkpoint's scores, which are redone
    ///     whole on resume (a batch system's grace period is shorter than scoring 1,000 genotypes).
    /// - Throws: `RunError` when the checkpoint does not fit the search's supernet, a genotype
    ///   does not fit it, or the supernet has no single-path forward; `FidelityScoringStopped`
    ///   when `stop` says so.
    public func scores(_ genotypes: [Genotype], checkpoint: URL, stop: () throws -> FarmStop? = { nil },
                       label: (Int?) -> String) throws -> (scores: [Double], epoch: Int?) {
        // Op dropout changes only the weight step's training forward; its edges keep MixedOp's
        // names, so the supernet is rebuilt without it (the single path has no dropout).
        var rebuilt = search
        rebuilt.opDropout = nil
        let method = try rebuilt.method.make(rebuilt, inputShape: weightsHalf.imageShape, classes: weightsHalf.classes,
                                             averager: GradientAverager(comm))
        let file = try CheckpointFile.read(from: checkpoint)
        do { try method.restoreForEvaluation(from: file) } catch {
            throw RunError("\(checkpoint.path) does not fit the supernet of \(searchDirectory.config.path): \(error)")
        }
        let epoch = file.metadata["epoch"]?.int
        let whole = config.scoreBatches == nil
        let scoring = SupernetScoring(network: method.network, end: end, settings: settings(count: genotypes.count), seed: config.seed)
        defer { method.network.path = nil }
        end.log("supernet scores: \(genotypes.count) genotypes on \(label(epoch)), single path, BatchNorm recomputed on \(config.bnBatches) training batches each, scored on \(whole ? "the \(validation.count) images of the validation half" : "\(config.scoreBatches!) fixed validation batches of \(end.batchSize)")")
        var scores: [Double] = []
        var lastShown = Date()
        for (i, g) in genotypes.enumerated() {
            if let stopped = try stop() {
                end.log("supernet scores: stopped after \(i) of \(genotypes.count) genotypes on \(label(epoch)); these are scored again on resume")
                throw FidelityScoringStopped(end: stopped)
            }
            do {
                scores.append(try scoring.accuracy(of: g, wholeValidationHalf: whole))
            } catch let e as GenotypeError {
                throw RunError("genotype \(i) does not fit the supernet of \(searchDirectory.url.path): \(e)")
            } catch let e as KernelError where "\(e)".contains("no single-path forward") {
                throw RunError("the \(search.method.rawValue) supernet of \(searchDirectory.url.path) cannot run one genotype alone: \(e)")
            }
            if Date().timeIntervalSince(lastShown) >= 10 || i + 1 == genotypes.count {
                lastShown = Date()
                end.log(String(format: "supernet scores: %d/%d genotypes, best %.2f%%", i + 1, genotypes.count, 100 * scores.max()!))
            }
        }
        if let cache = scoring.statisticsCache { end.log("supernet scores: path BatchNorm statistics \(cache.summary)") }
        return (scores, epoch)
    }
}

/// A stop (signal or time budget) while a fidelity study scores the supernet, as every rank agreed.
public struct FidelityScoringStopped: Error {
    public let end: FarmStop
}
