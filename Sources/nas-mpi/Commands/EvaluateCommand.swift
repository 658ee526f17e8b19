import ArgumentParser
import Distributed
import Foundation
import Kernels
import Search

/// `nas-mpi evaluate`: test loss and accuracy of a trained network, or of a search run's supernet.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Report the test loss and accuracy of a run's checkpoint (a trained network, or a search's supernet).",
        discussion: """
            Reads the run's config.json for the network and data. A training run: its best.bin (or --checkpoint \
            last, or a checkpoint path); --weights loads a safetensors file instead (as written by `nas-mpi \
            export`), on its test images, or with --split validation on the validation images of a run trained with \
            --validation-split. A search run: the supernet with its alphas from checkpoint.bin, a diagnostic evaluated on \
            the data's test split, or on the search's validation half when the data has none (--split chooses). \
            --recalibrate-bn N recomputes the BatchNorm statistics on N training batches (cumulative average, \
            no augmentation; at most one pass over the training images) before testing. --test-data FILE tests \
            on another CSV file than the run's.
            """
    )

    enum Split: String, ExpressibleByArgument, CaseIterable { case test, validation }

    @Option(name: .customLong("run"), help: "The run directory (training or search).") var runPath: String
    @Option(help: "best, last, or a checkpoint file (default: best; a search run has only last).") var checkpoint: String?
    @Option(help: "A safetensors file to load instead of a checkpoint.") var weights: String?
    @Option(help: "test (the data's test split, the default when it has one) or validation (a search's architecture half; a training run's --validation-split images).")
    var split: Split?
    @Option(help: "Recompute BatchNorm statistics on this many training batches first (0: no).") var recalibrateBn = 0
    @Option(help: "Images per evaluation batch (default: the run's batch size).") var batchSize: Int?
    @Flag(help: "Print one JSON object (loss and accuracy at full precision) instead of text.") var json = false
    @OptionGroup var testDataOptions: TestDataOptions
    @OptionGroup var threading: ThreadOptions

    func validate() throws {
        guard recalibrateBn >= 0 else { throw ValidationError("--recalibrate-bn must be at least 0") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if weights != nil, checkpoint != nil {
            throw ValidationError("--weights and --checkpoint both name the weights to evaluate; give one of them")
        }
    }

    /// What was evaluated and the result.
    struct Result {
        var network: String
        var weights: String
        /// The epochs the weights were trained for, where the checkpoint says.
        var epoch: Int?
        var split: String
        var splitNote: String
        var images: Int
        var loss: Double
        var accuracy: Double
        var recalibratedBatches: Int
    }

    func run() throws {
        let comm = MPIEnvironment.worldOrLocal()
        try RunSupport.abortingOnError(comm) {
            threading.apply()
            let dir = RunDirectory(runPath)
            let kind = try RunSupport.savedConfig(comm) { try dir.kind() }
            let result = kind == .search ? try evaluateSupernet(dir, comm) : try evaluateTrained(dir, comm)
            guard result.loss.isFinite else {
                throw RunError("the \(result.split) loss is \(result.loss): the weights in \(result.weights) produce non-finite outputs (did the run diverge?)")
            }
            if comm.rank == 0 { report(result) }
        }
    }

    private func evaluateTrained(_ dir: RunDirectory, _ comm: Communicator) throws -> Result {
        var config = try RunSupport.savedConfig(comm) { try Trainer.savedConfig(dir) }
        if split == .validation, config.validationSplit == nil {
            throw ValidationError("--split validation: this training run has no validation images (it was trained without --validation-split)")
        }
        config.data = try testDataOptions.apply(to: config.data)
        config.evaluateTest = true
        let data = try config.loadData()
        let train = data.train
        let useValidation = split == .validation
        guard let test = useValidation ? data.validation : data.test else {
            throw RunError("this training run has no test images: its data has no test split and --validation-split held out images of the training file instead; give --test-data FILE")
        }
        let heldOut = !useValidation && data.heldOut
        let net = try EvalNetwork(config.networkConfig(inputShape: train.imageShape, classes: train.classes),
                                  genotype: config.genotype, seed: config.seed)
        let (source, file) = try weightsFile(dir, default: "best")
        if weights == nil, let g = file.metadata["genotype"]?.string, g != config.genotype.pythonDescription {
            throw RunError("\(source.path) was trained on another genotype than \(dir.config.path) describes")
        }
        do { try net.state.restore(from: file) } catch {
            throw RunError("\(source.path) does not fit the network of \(dir.config.path): \(error)")
        }
        let batch = batchSize ?? config.batchSize
        let recalibrated = try recalibrate(net.state, on: train, batch: batch, seed: config.seed, comm) { b in
            _ = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
        }
        let (loss, accuracy) = try Search.evaluate(test, batchSize: batch, comm: comm) { b in
            try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: false)).logits
        }
        return Result(network: "evaluation network", weights: source.path, epoch: file.metadata["epoch"]?.int,
                      split: useValidation ? "validation" : heldOut ? "held_out" : "test",
                      splitNote: useValidation ? "the run's --validation-split images" : heldOut ? "a held-out tenth of the training data" : config.data.testPath ?? "",
                      images: test.count,
                      loss: loss, accuracy: accuracy, recalibratedBatches: recalibrated)
    }

    /// The supernet of a search run, with its alphas, as a diagnostic: on the data's test split, or
    /// on the search's validation half (where the search measured its own val_acc).
    private func evaluateSupernet(_ dir: RunDirectory, _ comm: Communicator) throws -> Result {
        let config = try RunSupport.savedConfig(comm) { try Searcher.savedConfig(dir) }
        let (weightsHalf, validation, testSplit) = try config.loadSplits()
        let useTest = split == .test || (split == nil && testSplit != nil)
        guard let data = useTest ? testSplit : validation else {
            throw ValidationError("--split test: \(config.data.kind.rawValue) data has no test split; use --split validation")
        }
        let method = try config.method.make(config, inputShape: weightsHalf.imageShape, classes: weightsHalf.classes,
                                            averager: GradientAverager(LocalCommunicator()))
        if weights == nil, checkpoint == "best" {
            throw ValidationError("a search run keeps only its last checkpoint (checkpoint.bin); leave out --checkpoint")
        }
        let (source, file) = try weightsFile(dir, default: "last")
        do {
            try method.restoreForEvaluation(from: file)
        } catch {
            throw RunError("\(source.path) does not fit the supernet of \(dir.config.path): \(error)")
        }
        // Read after the restore: a method may rebuild its supernet for the file (P-DARTS: the stage's).
        let net = method.network
        let batch = batchSize ?? config.batchSize
        let recalibrated = try recalibrate(net.state, on: weightsHalf, batch: batch, seed: config.seed, comm) { b in
            _ = try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: true))
        }
        let (loss, accuracy) = try Search.evaluate(data, batchSize: batch, comm: comm) { b in
            try net.forward(Variable(b.images), ForwardContext(tape: Tape(recording: false), training: false))
        }
        return Result(network: "supernet", weights: source.path, epoch: file.metadata["epoch"]?.int, split: useTest ? "test" : "validation",
                      splitNote: useTest ? "the data's test split" : "the search's validation half", images: data.count,
                      loss: loss, accuracy: accuracy, recalibratedBatches: recalibrated)
    }

    /// The safetensors file of --weights, or the checkpoint --checkpoint names (default `name`).
    private func weightsFile(_ dir: RunDirectory, default name: String) throws -> (URL, CheckpointFile) {
        if let weights {
            let url = URL(fileURLWithPath: weights)
            return (url, try Safetensors.read(url))
        }
        let url = checkpointURL(dir, default: name)
        return (url, try CheckpointFile.read(from: url))
    }

    private func checkpointURL(_ dir: RunDirectory, default name: String) -> URL {
        switch checkpoint ?? name {
        case "best": return dir.file("best.bin")
        case "last": return dir.checkpoint
        case let path: return URL(fileURLWithPath: path)
        }
    }

    /// --recalibrate-bn, bounded by one pass over the training images, with a progress line every
    /// few seconds; returns the batches run.
    private func recalibrate(_ state: NamedState, on train: ImageDataset, batch: Int, seed: UInt64, _ comm: Communicator,
                             forward: (Batch) throws -> Void) throws -> Int {
        guard recalibrateBn > 0 else { return 0 }
        let onePass = BatchNormRecalibration.batchesPerPass(images: train.count, batchSize: batch)
        let batches = min(recalibrateBn, onePass)
        if batches < recalibrateBn, comm.rank == 0 {
            say("--recalibrate-bn \(recalibrateBn) is more than the \(onePass) batches of one pass over the \(train.count) training images (batches are not augmented, so more would repeat images); using \(onePass)")
        }
        var lastShown = ResourceUsage.now()
        try BatchNormRecalibration.run(state, data: train, batches: batches, batchSize: batch, seed: seed, comm: comm, progress: { done in
            guard comm.rank == 0, done == batches || ResourceUsage.now() - lastShown >= 2 else { return }
            lastShown = ResourceUsage.now()
            say("recalibrating BatchNorm: \(done)/\(batches) batches")
        }, forward: forward)
        return batches
    }

    /// A progress or note line: standard output for text, standard error under --json (whose
    /// standard output is one JSON object).
    private func say(_ line: String) {
        if json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line); fflush(stdout) }
    }

    private func report(_ r: Result) {
        if json {
            var object: [String: JSONValue] = [
                "network": .string(r.network), "weights": .string(r.weights), "split": .string(r.split),
                "images": .number(Double(r.images)), "loss": .number(r.loss), "accuracy": .number(r.accuracy),
                "recalibrated_batches": .number(Double(r.recalibratedBatches)),
            ]
            if let e = r.epoch { object["epoch"] = .number(Double(e)) }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: (try? enc.encode(object)) ?? Data("{}".utf8), as: UTF8.self))
            return
        }
        let name = r.split == "validation" ? "validation" : "test"
        print("\(r.network == "supernet" ? "supernet with alphas, " : "")weights: \(r.weights)\(r.epoch.map { " (epoch \($0))" } ?? "")\(r.recalibratedBatches > 0 ? ", BatchNorm statistics recomputed on \(r.recalibratedBatches) batches" : "")")
        print("\(name) images: \(r.images)\(r.splitNote.isEmpty ? "" : " (\(r.splitNote))")")
        print(String(format: "\(name) loss: %.4f", r.loss))
        print(String(format: "\(name) accuracy: %.2f%%", 100 * r.accuracy))
    }
}
