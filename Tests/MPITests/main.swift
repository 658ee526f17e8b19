// Multi-rank checks of the MPI communicator, run by scripts/test as
//   mpirun -np 2 .build/debug/mpi-tests    (and -np 4)
// and once without mpirun, where MPI starts as a singleton of one rank.
// Every rank runs every check; the failure count is summed over ranks and rank 0 prints
// "N passed, M failed". The exit status is non-zero when any rank failed a check.
import Distributed
import Foundation
import Kernels
import Search

let comm = MPIEnvironment.start()
let (rank, size) = (comm.rank, comm.size)
var passed = 0
var failures: [String] = []

func check(_ name: String, _ condition: @autoclosure () throws -> Bool) {
    do {
        if try condition() { passed += 1 } else { failures.append(name) }
    } catch {
        failures.append("\(name): \(error)")
    }
}

// allreduce of Floats: rank r contributes r + 1 + i.
var values = (0..<1000).map { Float(rank + 1 + $0) }
try comm.allreduceSum(&values)
let rankSum = Float(size * (size + 1) / 2)
check("allreduceSum Float", values.enumerated().allSatisfy { $0.element == rankSum + Float(size * $0.offset) })

// A large fused buffer (2M floats, the size of a DARTS supernet's gradients).
var big = [Float](repeating: Float(rank), count: 2_000_000)
try comm.allreduceSum(&big)
check("allreduceSum 2M floats", big.allSatisfy { $0 == Float(size * (size - 1) / 2) })

var doubles = [Double(rank) + 0.5, 1]
try comm.allreduceSum(&doubles)
check("allreduceSum Double", doubles == [Double(size * (size - 1)) / 2 + 0.5 * Double(size), Double(size)])

var means = [Float(rank * 2)]
try comm.allreduceMean(&means)
check("allreduceMean", abs(means[0] - Float(size - 1)) < 1e-6)

// broadcast from the first and from the last rank.
for root in [0, size - 1] {
    var b = [Float](repeating: Float(rank), count: 17)
    try comm.broadcast(&b, root: root)
    check("broadcast from \(root)", b.allSatisfy { $0 == Float(root) })
}
var bytes: [UInt8] = rank == 0 ? Array("genotype".utf8) : []
try comm.broadcast(bytes: &bytes, root: 0)
check("broadcast bytes", String(decoding: bytes, as: UTF8.self) == "genotype")

// point-to-point around a ring.
if size > 1 {
    let out = [Int64(rank)]
    var incoming = [Int64(-1)]
    let next = (rank + 1) % size, prev = (rank + size - 1) % size
    if rank % 2 == 0 {
        try out.withUnsafeBytes { try comm.send($0, to: next, tag: 7) }
        try incoming.withUnsafeMutableBytes { try comm.receive($0, from: prev, tag: 7) }
    } else {
        try incoming.withUnsafeMutableBytes { try comm.receive($0, from: prev, tag: 7) }
        try out.withUnsafeBytes { try comm.send($0, to: next, tag: 7) }
    }
    check("send/receive ring", incoming[0] == Int64(prev))
}

// gather at the root, in rank order.
if let all = try comm.gather(Double(rank * 10)) {
    check("gather at root", rank == 0 && all == (0..<size).map { Double($0 * 10) })
} else {
    check("gather elsewhere", rank != 0)
}
if let hashes = try comm.gather(UInt64(rank) << 40, root: size - 1) {
    check("gather UInt64 at last rank", hashes == (0..<size).map { UInt64($0) << 40 })
}

// The length check that guards fused allreduces.
check("same length accepted", (try? comm.requireSameOnAllRanks(42, what: "length")) != nil)
if size > 1 {
    var message = ""
    do { try comm.requireSameOnAllRanks(rank == 0 ? 10 : 11, what: "gradient buffer length") } catch { message = "\(error)" }
    check("different lengths refused", message.contains("gradient buffer length differs across ranks"))
}
check("bad root refused", (try? comm.broadcast(&means, root: size)) == nil)
try comm.barrier()

// A bounded barrier (the last step of a stop): met in time by every rank; given up on by the
// ranks that waited 0.2 s while rank 0 came 1 s late, which rank 0 then completes (the abandoned
// request matches its call, so later collectives stay in step).
check("bounded barrier met", try comm.barrier(within: 10))
if size > 1 {
    if rank == 0 {
        usleep(1_000_000)
        check("bounded barrier: the late rank finds the others' calls", try comm.barrier(within: 10))
    } else {
        let start = Date()
        check("bounded barrier: given up after its time", try !comm.barrier(within: 0.2))
        check("bounded barrier: returns soon after its time", Date().timeIntervalSince(start) < 0.9)
    }
    var after = [Float(1)]
    try comm.allreduceSum(&after)
    check("collectives in step after an abandoned bounded barrier", after == [Float(size)])
}

// MARK: Groups, probes and typed messages

// split into even and odd ranks: an allreduce within a group sums only that group.
do {
    let parity = try comm.split(color: rank % 2, key: rank)
    let members = Array(stride(from: rank % 2, to: size, by: 2))
    check("split: group size and rank", parity.size == members.count && parity.rank == rank / 2)
    var v = [Double(rank + 1)]
    try parity.allreduceSum(&v)
    check("split: allreduce sums only the group", v[0] == Double(members.reduce(0) { $0 + $1 + 1 }))
    let reversed = try comm.split(color: 0, key: -rank)
    check("split: the key orders the ranks", reversed.size == size && reversed.rank == size - 1 - rank)
}

// probe any source: every other rank sends rank 0 3*r bytes of value r; rank 0 takes them in arrival order.
check("iprobe: nothing sent, nothing found", try comm.iprobe(source: nil, tag: 23) == nil)
if rank == 0 {
    var senders: [Int] = []
    for _ in 1..<size {
        let m = try comm.probe(source: nil, tag: 21)
        var got = [UInt8](repeating: 0, count: m.byteCount)
        try got.withUnsafeMutableBytes { try comm.receive($0, from: m.source, tag: m.tag) }
        check("probe: length and bytes of rank \(m.source)'s message", m.tag == 21 && got == [UInt8](repeating: UInt8(m.source), count: 3 * m.source))
        senders.append(m.source)
    }
    check("probe: one message from every other rank", senders.sorted() == Array(1..<size))
} else {
    try [UInt8](repeating: UInt8(rank), count: 3 * rank).withUnsafeBytes { try comm.send($0, to: 0, tag: 21) }
}

// iprobe: rank 0 polls until every other rank's message has arrived.
if rank == 0 {
    var senders: Set<Int> = []
    let deadline = Date().addingTimeInterval(10)
    while senders.count < size - 1 && Date() < deadline {
        if let m = try comm.iprobe(source: nil, tag: 22) {
            let (value, source) = try comm.receive(Int.self, from: m.source, tag: 22)
            check("iprobe: typed message from rank \(source)", value == source * 100 && m.source == source)
            senders.insert(source)
        }
    }
    check("iprobe: found every other rank's message", senders == Set(1..<size))
} else {
    try comm.send(rank * 100, to: 0, tag: 22)
}

// Typed messages around a ring, received from any source; a typed broadcast from the last rank.
struct Note: Codable, Equatable {
    var from: Int
    var text: String
    var values: [Double]
}
if size > 1 {
    let next = (rank + 1) % size, prev = (rank + size - 1) % size
    let mine = Note(from: rank, text: "rank \(rank)", values: [Double(rank), 0.5])
    var got: (value: Note, source: Int)
    if rank % 2 == 0 {
        try comm.send(mine, to: next, tag: 24)
        got = try comm.receive(Note.self, from: nil, tag: 24)
    } else {
        got = try comm.receive(Note.self, from: nil, tag: nil)
        try comm.send(mine, to: next, tag: 24)
    }
    check("typed send/receive ring", got.source == prev && got.value == Note(from: prev, text: "rank \(prev)", values: [Double(prev), 0.5]))
}
let note = try comm.broadcast(value: rank == size - 1 ? Note(from: rank, text: "last", values: [1, 2, 3]) : nil, root: size - 1)
check("typed broadcast from the last rank", note == Note(from: size - 1, text: "last", values: [1, 2, 3]))
try comm.barrier()

// MARK: Task farm

let farmStart = Date()
try taskFarmChecks(comm) { name, ok in check(name, ok) }
try comm.barrier()
if rank == 0 { print(String(format: "task farm checks: %.1f s", Date().timeIntervalSince(farmStart))) }

// MARK: Data-parallel search

/// A temporary run directory shared by all ranks (rank 0 chooses the name).
func sharedDirectory(_ tag: String) throws -> RunDirectory {
    var name = Array((FileManager.default.temporaryDirectory.path + "/nas-mpi-mpitest-\(tag)-\(getpid())").utf8)
    try comm.broadcast(bytes: &name)
    return RunDirectory(String(decoding: name, as: UTF8.self))
}

func tinyConfig(order: Int, epochs: Int = 1, method: SearchMethodKind = .darts) -> SearchConfig {
    var c = SearchConfig.preset(.quick)
    c.method = method
    c.partialChannels = 2
    c.data = DataSource(kind: .synthetic, imageShape: [1, 8, 8])
    c.data.syntheticCount = 64
    c.channels = 2
    c.layers = 3
    c.batchSize = 8
    c.epochs = epochs
    c.order = order
    c.seed = 11
    if method.isSinglePath { c.weightSharing = WeightSharingSettings(samples: 6, top: 2, batches: 2, bnBatches: 1) }
    return c
}

func cleanup(_ dir: RunDirectory) throws {
    try comm.barrier()
    if rank == 0 { try? FileManager.default.removeItem(at: dir.url) }
}

// Identical weights and alphas on every rank after several steps, first and second order.
for order in [1, 2] {
    let dir = try sharedDirectory("order\(order)")
    let searcher = try Searcher(config: tinyConfig(order: order), directory: dir, resume: false, communicator: comm, threads: 1)
    searcher.log = { _ in }
    searcher.consistencyInterval = 1
    _ = try searcher.run()
    let hashes = try comm.gather(searcher.stateHash())
    if rank == 0 { check("identical parameters on all ranks, order \(order)", Set(hashes!).count == 1) }
    try cleanup(dir)
}

// Sharding: over an epoch the ranks' shards are disjoint and cover the global batches exactly once.
do {
    let n = 40, batch = 8
    var seen = [Double](repeating: 0, count: n)
    for step in 0..<(n / batch) {
        let start = Searcher.shardStart(step: step, batch: batch, rank: rank, ranks: size)
        for p in start..<(start + batch / size) { seen[p] += 1 }
    }
    try comm.allreduceSum(&seen)
    check("shards cover every sample exactly once per epoch", seen.allSatisfy { $0 == 1 })
}

// --sync-bn: N ranks with batch B/N give the gradients of one rank with batch B.
do {
    let config = SupernetConfig(channels: 2, layers: 3, inputShape: [1, 8, 8], classes: 3)
    let data = try SyntheticDataset.make(count: 8 * size, imageShape: [1, 8, 8], classes: 3, seed: 4)
    var g = RandomGenerator(seed: 1)
    let whole = data.batch(Array(0..<data.count), augment: false, generator: &g)
    let local = data.count / size
    let mine = data.batch(Array((rank * local)..<((rank + 1) * local)), augment: false, generator: &g)

    let reference = try SearchNetwork(config, seed: 5)
    let t1 = Tape()
    try t1.backward(try reference.loss(whole.images, whole.labels, ForwardContext(tape: t1, training: true)).loss)

    let distributed = try SearchNetwork(config, seed: 5)
    let averager = GradientAverager(comm)
    let t2 = Tape()
    try t2.backward(try distributed.loss(mine.images, mine.labels,
                                         ForwardContext(tape: t2, training: true, statisticsReducer: averager.statisticsReducer)).loss)
    let all2 = distributed.weights + distributed.architecture
    try averager.average(all2)
    var worst = 0.0
    for (a, b) in zip(reference.weights + reference.architecture, all2) {
        let ga = a.grad!, gb = b.grad!
        var diff = 0.0
        for j in 0..<ga.count { diff += Double(ga.scalars[j] - gb.scalars[j]) * Double(ga.scalars[j] - gb.scalars[j]) }
        let norm = ga.squaredNorm().squareRoot()
        if norm > 1e-6 { worst = max(worst, diff.squareRoot() / norm) }
    }
    check("sync-bn gradients of \(size) ranks equal one rank's within 1e-4 relative (worst \(worst))", worst <= 1e-4)
    if rank == 0 { print(String(format: "sync-bn: worst relative gradient difference %.2e over %d tensors", worst, all2.count)) }
}

// A resumed run matches an uninterrupted one: a tiny search run whole, then run again and stopped
// by SIGTERM requested from the last rank at a chosen point, resumed, and compared (state hash,
// genotype, every checkpoint tensor and its metadata, validation metrics). The methods: DARTS,
// PC-DARTS, random search with weight sharing, ENAS, DARTS widened by --channel-schedule at the
// start of the second epoch (stopped before the widening and between the two halves of the step
// that widened), and the anti-collapse methods (issue 13): P-DARTS stopped in the warm-up of its
// second stage and after it, SDARTS-RS, DARTS-, and DARTS with the regularisers and constraints
// all on (beta-decay, entropy, op dropout, both architecture gradient clips, --bn-mode batch).

/// One interruption of a resume check.
struct ResumeStop {
    /// Says where the run stops, for the check names.
    var name: String
    /// Asked on the last rank at each stop question of the interrupted run (after a step, and
    /// between the architecture and the weight part of a step); true: stop now.
    var now: (Searcher) -> Bool
    /// What the interrupted run's checkpoint must show (checked on rank 0), as a check name
    /// given the checkpoint, and the verdict.
    var saved: ((CheckpointFile) -> (String, Bool))?
}

/// Stops at the `n`-th stop question (1-based; the first is asked before the first step).
func stopAtQuestion(_ n: Int) -> (Searcher) -> Bool {
    var asked = 0
    return { _ in asked += 1; return asked == n }
}

/// Stops at the first stop question of step `step` (from 0) of epoch `epoch` (from 0): between
/// the two halves of the step when it has an architecture part, after the step otherwise.
func stopIn(epoch: Int, step: Int) -> (Searcher) -> Bool {
    { $0.loop.epoch == epoch && $0.loop.stepInEpoch == step }
}

/// The checkpoint's epoch (from 0), step in that epoch and whether it was taken between the two
/// halves of a step.
func position(_ file: CheckpointFile) -> (epoch: Int, step: Int, betweenHalves: Bool) {
    (file.metadata["epoch"]?.int ?? -1, file.metadata["step"]?.int ?? -1, file.metadata["architecture_done"] == .bool(true))
}

/// Runs `config` whole once, then once per stop interrupted and resumed, and compares each
/// resumed run with the whole one; `metadata` names the method's checkpoint metadata that both
/// final checkpoints must hold (and hold equal).
func checkResume(_ label: String, tag: String, _ config: SearchConfig, metadata required: [String] = [], stops: [ResumeStop]) throws {
    let whole = try sharedDirectory("whole-\(tag)")
    let a = try Searcher(config: config, directory: whole, resume: false, communicator: comm, threads: 1)
    a.log = { _ in }
    _ = try a.run()
    for (k, stop) in stops.enumerated() {
        let label = "\(label) (\(stop.name))"
        let cut = try sharedDirectory("cut-\(tag)-\(k)")
        let b = try Searcher(config: config, directory: cut, resume: false, communicator: comm, threads: 1)
        b.log = { _ in }
        b.stopRequested = { [unowned b] in stop.now(b) && rank == size - 1 ? SIGTERM : nil }
        let first = try b.run()
        check("\(label): run interrupted by one rank stops all", first == .interrupted(signal: SIGTERM))
        if let saved = stop.saved, rank == 0 {
            let (name, ok) = saved(try CheckpointFile.read(from: cut.checkpoint))
            check("\(label): the interrupted run's checkpoint \(name)", ok)
        }
        let c = try Searcher(config: config, directory: cut, resume: true, communicator: comm, threads: 1)
        c.log = { _ in }
        _ = try c.run()
        check("\(label): resumed \(size)-rank run matches the uninterrupted one", c.stateHash() == a.stateHash())
        if rank == 0 {
            let ga = try String(contentsOf: whole.genotypeText, encoding: .utf8)
            let gc = try String(contentsOf: cut.genotypeText, encoding: .utf8)
            check("\(label): resumed run writes the same genotype", ga == gc)
            // Every tensor of the final checkpoint, BatchNorm running statistics included (each rank's
            // own statistics go into a mid-epoch checkpoint), and the validation metrics.
            let x = try CheckpointFile.read(from: whole.checkpoint), y = try CheckpointFile.read(from: cut.checkpoint)
            let differing = zip(x.tensors, y.tensors).filter { $0.0.tensor != $0.1.tensor }.map(\.0.name)
            check("\(label): resumed \(size)-rank run: identical checkpoint tensors incl. BatchNorm buffers (differing: \(differing.prefix(3)))",
                  x.tensors.map(\.name) == y.tensors.map(\.name) && differing.isEmpty)
            // The method's own metadata (P-DARTS's stage and kept op lists, DARTS-'s beta, Adam's
            // step count, the width), all but the timings.
            let timings: Set<String> = ["seconds", "metrics"]
            let keys = Set(x.metadata.keys).union(y.metadata.keys).subtracting(timings)
            let differingKeys = keys.filter { x.metadata[$0] != y.metadata[$0] }.sorted()
            let missing = required.filter { x.metadata[$0] == nil }
            check("\(label): resumed \(size)-rank run: identical checkpoint metadata (differing: \(differingKeys), missing: \(missing))",
                  differingKeys.isEmpty && missing.isEmpty)
            func validation(_ d: RunDirectory) throws -> [String] {
                try String(contentsOf: d.metrics, encoding: .utf8).split(separator: "\n").map { line in
                    let o = try JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8))
                    return "\(o["val_loss"]?.double ?? -1) \(o["val_acc"]?.double ?? -1) \(o["train_loss"]?.double ?? -1)"
                }
            }
            check("\(label): resumed \(size)-rank run: identical validation loss and accuracy", try validation(whole) == validation(cut))
        }
        try cleanup(cut)
    }
    try cleanup(whole)
}

let resumeStart = Date()
func timed(_ what: String, _ body: () throws -> Void) throws {
    let start = Date()
    try body()
    try comm.barrier()
    if rank == 0 { print(String(format: "resume checks, %@: %.1f s", what, Date().timeIntervalSince(start))) }
}

// The fifth question: after the second step of the first epoch. DARTS also during the first
// epoch's evaluation, where rank 0 holds the ranks' statistics gathered before the averaging (a
// second gather on the other ranks alone left them waiting for rank 0 at the exit).
for method in [SearchMethodKind.darts, .pcDarts, .randomWS, .enas] {
    try timed(method.rawValue) {
        var stops = [ResumeStop(name: "after the second step", now: stopAtQuestion(5))]
        if method == .darts {
            stops.append(ResumeStop(name: "during the first evaluation", now: { $0.loop.evaluating && $0.loop.epoch == 0 }) { file in
                let (epoch, step, _) = position(file)
                return ("is at the end of epoch 1 (epoch \(epoch), step \(step))", epoch == 0 && step > 0)
            })
        }
        try checkResume(method.rawValue, tag: method.rawValue, tinyConfig(order: 1, epochs: 2, method: method), stops: stops)
        // Every collective matched: one more meets at once on every rank.
        check("\(method.rawValue): the ranks are in step after the stops", try comm.barrier(within: 10))
    }
}
try timed("darts --channel-schedule") {
    var widened = tinyConfig(order: 1, epochs: 2)
    widened.channelSchedule = try ChannelSchedule(parsing: "2@0,4@1")
    widened.channels = 4
    // At the fifth question (before the widening, as the checkpoint check confirms), and at the
    // first question after the widening.
    func holds(_ channels: Int) -> (CheckpointFile) -> (String, Bool) {
        { file in
            let saved = file.metadata["channels"]?.int
            return ("holds C=\(channels) (C=\(saved ?? -1))", saved == channels)
        }
    }
    try checkResume("darts --channel-schedule 2@0,4@1", tag: "darts-widened", widened, stops: [
        ResumeStop(name: "stopped before the widening", now: stopAtQuestion(5), saved: holds(2)),
        ResumeStop(name: "stopped in the widening step", now: { $0.network.config.channels == 4 }, saved: holds(4)),
    ])
}

// The anti-collapse cases search 4 ops (half the cost of 8), none and skip_connect among them.
func smallSpace(_ method: SearchMethodKind, epochs: Int) -> SearchConfig {
    var c = tinyConfig(order: 1, epochs: epochs, method: method)
    c.primitives = [.none, .maxPool3x3, .skipConnect, .sepConv3x3]
    return c
}

// P-DARTS: two stages of two epochs (3 then 4 cells, 4 then 2 ops per edge), each with one
// warm-up epoch; stopped in the second stage's warm-up (epoch 3, after its second step: the
// stage's supernet is built, its alphas frozen) and in its architecture epoch (epoch 4, between
// the halves of its second step). The comparison of the checkpoints' metadata covers the kept op
// lists; the genotype comes from them.
try timed("p-darts") {
    var pdarts = smallSpace(.pdarts, epochs: 4)
    pdarts.warmupEpochs = 1
    pdarts.pdarts = PDARTSSettings(stages: [3, 4], stageOps: [4, 2], skipDropout: [0.2, 0.5], maxSkipConnections: 1)
    func inStage2(_ file: CheckpointFile, epoch: Int, step: Int, betweenHalves: Bool) -> (String, Bool) {
        let p = position(file), stage = file.metadata["pdarts_stage"]?.int ?? -1
        let ops = file.metadata["pdarts_ops"].flatMap { $0.object?["normal"]?.array?.first?.array?.count } ?? -1
        return ("is in the second stage (stage \(stage), \(ops) ops per edge) at epoch \(p.epoch + 1) step \(p.step)\(p.betweenHalves ? "+arch" : "")",
                stage == 1 && ops == 2 && p.epoch == epoch && p.step == step && p.betweenHalves == betweenHalves)
    }
    try checkResume("p-darts", tag: "p-darts", pdarts, metadata: ["pdarts_stage", "pdarts_ops"], stops: [
        ResumeStop(name: "stopped in the second stage's warm-up", now: stopIn(epoch: 2, step: 1),
                   saved: { inStage2($0, epoch: 2, step: 2, betweenHalves: false) }),
        ResumeStop(name: "stopped in the second stage after its warm-up", now: stopIn(epoch: 3, step: 1),
                   saved: { inStage2($0, epoch: 3, step: 1, betweenHalves: true) }),
    ])
}

// SDARTS-RS and DARTS-: stopped in the second epoch (eps and beta depend on the epoch), DARTS-
// between the halves of a step, SDARTS-RS after one.
try timed("sdarts") {
    var asked = 0
    try checkResume("sdarts", tag: "sdarts", smallSpace(.sdarts, epochs: 2), stops: [
        ResumeStop(name: "after the second step of the second epoch", now: { s in
            guard s.loop.epoch == 1 && s.loop.stepInEpoch == 1 else { return false }
            asked += 1
            return asked == 2
        }, saved: { file in
            let p = position(file)
            return ("is at epoch \(p.epoch + 1) step \(p.step)\(p.betweenHalves ? "+arch" : "")", p.epoch == 1 && p.step == 2 && !p.betweenHalves)
        }),
    ])
}
try timed("darts-minus") {
    try checkResume("darts-minus", tag: "darts-minus", smallSpace(.dartsMinus, epochs: 2), metadata: ["auxiliary_skip_beta"], stops: [
        ResumeStop(name: "between the halves of the second epoch's second step", now: stopIn(epoch: 1, step: 1), saved: { file in
            let p = position(file)
            return ("is at epoch \(p.epoch + 1) step \(p.step)+arch", p.epoch == 1 && p.step == 1 && p.betweenHalves)
        }),
    ])
}

// DARTS with every regulariser and constraint on; the ramped terms are 0 in the first epoch, so
// the stop is in the second.
try timed("darts regularised") {
    var regularised = smallSpace(.darts, epochs: 2)
    regularised.betaRegularization = 0.5
    regularised.entropyWeight = 0.1
    regularised.opDropout = OpDropoutRates(["all": 0.1, "skip_connect": 0.3])
    regularised.archGradClip = 0.05
    regularised.archGradClipPerEdge = 0.01
    regularised.bnMode = .batch
    try checkResume("darts --beta-regularization --entropy-weight --op-dropout --arch-grad-clip(-per-edge) --bn-mode batch",
                    tag: "darts-regularised", regularised, stops: [
        ResumeStop(name: "between the halves of the second epoch's second step", now: stopIn(epoch: 1, step: 1), saved: { file in
            let p = position(file)
            return ("is at epoch \(p.epoch + 1) step \(p.step)+arch", p.epoch == 1 && p.step == 1 && p.betweenHalves)
        }),
    ])
}
if rank == 0 { print(String(format: "resume checks: %.1f s", Date().timeIntervalSince(resumeStart))) }

// Random search with weight sharing: every rank trains the same architecture each step (weights
// compared every step) and chooses the same genotype; a sampler whose draws differ by rank
// still yields rank 0's draw everywhere.
do {
    func fnv(_ text: String) -> UInt64 { text.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 } }
    let dir = try sharedDirectory("random-ws")
    let config = tinyConfig(order: 1, epochs: 2, method: .randomWS)
    let searcher = try Searcher(config: config, directory: dir, resume: false, communicator: comm, threads: 1)
    searcher.log = { _ in }
    searcher.consistencyInterval = 1
    guard case .finished(let genotype) = try searcher.run() else { throw RunError("random-ws run did not finish") }
    let chosen = try comm.gather(fnv(genotype.pythonDescription))
    if rank == 0 { check("random-ws: the same genotype on all ranks", Set(chosen!).count == 1) }

    final class RankSampler: ArchitectureSampler {
        let uniform: UniformArchitectureSampler
        init(_ rank: Int) { uniform = UniformArchitectureSampler(seed: UInt64(100 + rank)) }
        func sample(epoch: Int, step: Int, draw: Int) throws -> Genotype { try uniform.sample(epoch: epoch, step: step, draw: draw) }
    }
    let method = try RandomWeightSharing(config, inputShape: [1, 8, 8], classes: 10, averager: GradientAverager(comm),
                                         sampler: RankSampler(rank))
    let drawn = try method.draw(epoch: 0, step: 3, draw: 0)
    let drawnHashes = try comm.gather(fnv(drawn.pythonDescription))
    let rankZeroDraw = try UniformArchitectureSampler(seed: 100).sample(epoch: 0, step: 3, draw: 0)
    if rank == 0 { check("random-ws: every rank uses rank 0's draw", Set(drawnHashes!).count == 1 && drawn == rankZeroDraw) }
    try cleanup(dir)
}
try comm.barrier()

var failed = [Double(failures.count)]
try comm.allreduceSum(&failed)
for f in failures { FileHandle.standardError.write(Data("rank \(rank) failed: \(f)\n".utf8)) }
try comm.barrier()
if rank == 0 {
    print("mpi-tests on \(size) rank(s): \(passed * size - Int(failed[0])) checks passed")
    print("\(passed * size - Int(failed[0])) passed, \(Int(failed[0])) failed")
}
exit(failed[0] == 0 ? 0 : 1)
