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

// A resumed run matches an uninterrupted one (DARTS, PC-DARTS, random search with weight sharing,
// ENAS, and DARTS widened by --channel-schedule at the start of the second epoch, stopped before
// the widening and between the two halves of the step that widened).
func resumeConfig(_ method: SearchMethodKind, widened: Bool) -> SearchConfig {
    var c = tinyConfig(order: 1, epochs: 2, method: method)
    if widened {
        c.channelSchedule = try! ChannelSchedule(parsing: "2@0,4@1")
        c.channels = 4
    }
    return c
}
for (method, widened, stopWide) in [(SearchMethodKind.darts, false, false), (.pcDarts, false, false), (.randomWS, false, false),
                                    (.enas, false, false), (.darts, true, false), (.darts, true, true)] {
    let tag = widened ? (stopWide ? "-stopped-wide" : "-stopped-narrow") : ""
    let label = method.rawValue + (widened ? " --channel-schedule 2@0,4@1 (\(stopWide ? "stopped in the widening step" : "stopped before the widening"))" : "")
    let whole = try sharedDirectory("whole-\(method.rawValue)\(tag)")
    let a = try Searcher(config: resumeConfig(method, widened: widened), directory: whole, resume: false, communicator: comm, threads: 1)
    a.log = { _ in }
    _ = try a.run()

    let cut = try sharedDirectory("cut-\(method.rawValue)\(tag)")
    let b = try Searcher(config: resumeConfig(method, widened: widened), directory: cut, resume: false, communicator: comm, threads: 1)
    b.log = { _ in }
    var steps = 0
    // The last rank asks: at the fifth question (with a widening: before it, as the checkpoint
    // check below confirms), or at the first question after the widening.
    b.stopRequested = { [unowned b] in
        steps += 1
        let now = stopWide ? b.network.config.channels == 4 : steps == 3 * 2 - 1
        return now && rank == size - 1 ? SIGTERM : nil
    }
    let first = try b.run()
    check("\(label): run interrupted by one rank stops all", first == .interrupted(signal: SIGTERM))
    if widened && rank == 0 {
        let channels = try CheckpointFile.read(from: cut.checkpoint).metadata["channels"]?.int
        check("\(label): the interrupted run's checkpoint holds C=\(stopWide ? 4 : 2) (C=\(channels ?? -1))", channels == (stopWide ? 4 : 2))
    }
    let c = try Searcher(config: resumeConfig(method, widened: widened), directory: cut, resume: true, communicator: comm, threads: 1)
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
        func validation(_ d: RunDirectory) throws -> [String] {
            try String(contentsOf: d.metrics, encoding: .utf8).split(separator: "\n").map { line in
                let o = try JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8))
                return "\(o["val_loss"]?.double ?? -1) \(o["val_acc"]?.double ?? -1) \(o["train_loss"]?.double ?? -1)"
            }
        }
        check("\(label): resumed \(size)-rank run: identical validation loss and accuracy", try validation(whole) == validation(cut))
    }
    try cleanup(whole)
    try cleanup(cut)
}
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
