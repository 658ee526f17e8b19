import Foundation

/// Progressive channel growth (`--channel-schedule 4@0,8@10,16@20`): the supernet's initial
/// channel count C from each listed epoch on. The search starts narrow (cheap epochs while the
/// weights are far from trained) and is widened at the start of each listed epoch by
/// `SearchNetwork.widened(to:)`, which keeps the function; the alphas and the optimisers' state
/// carry over. The last width is the run's `--channels` (the final supernet's width).
///
/// Written `C@E` pairs, comma-separated: the first epoch is 0, epochs and widths strictly increase.
public struct ChannelSchedule: Codable, Equatable, Sendable, CustomStringConvertible {
    /// (channels, first epoch) per stage, in order.
    public let stages: [(channels: Int, epoch: Int)]

    public init(_ stages: [(channels: Int, epoch: Int)]) throws {
        self.stages = stages
        try check()
    }

    /// Parses `C0@E0,C1@E1,...`.
    public init(parsing text: String) throws {
        var stages: [(Int, Int)] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = part.split(separator: "@", omittingEmptySubsequences: false)
                .map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard pair.count == 2, let c = pair[0], let e = pair[1] else {
                throw SearchConfigError("--channel-schedule takes comma-separated C@EPOCH pairs (e.g. 4@0,8@10,16@20: C=4 from epoch 0, 8 from epoch 10, 16 from epoch 20), got '\(text)'")
            }
            stages.append((c, e))
        }
        try self.init(stages)
    }

    /// The widths, in order.
    public var widths: [Int] { stages.map(\.channels) }
    /// The first width (the supernet's at epoch 0) and the last (the run's `--channels`).
    public var initialChannels: Int { stages[0].channels }
    public var finalChannels: Int { stages[stages.count - 1].channels }

    /// C in epoch `epoch` (from 0): the width of the last stage starting at or before it.
    public func channels(at epoch: Int) -> Int {
        stages.last { $0.epoch <= epoch }?.channels ?? initialChannels
    }

    /// The epochs (from 0) at whose start the supernet is widened.
    public var wideningEpochs: [Int] { stages.dropFirst().map(\.epoch) }

    public var description: String { stages.map { "\($0.channels)@\($0.epoch)" }.joined(separator: ",") }

    /// The schedule's own rules (a run's: `validate(epochs:channels:)`).
    private func check() throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError("--channel-schedule \(description): " + m) }
        guard let first = stages.first else { throw SearchConfigError("--channel-schedule needs at least one C@EPOCH pair") }
        guard first.epoch == 0 else { throw fail("the first width must start at epoch 0, got epoch \(first.epoch)") }
        for s in stages where s.channels < 1 { throw fail("widths must be at least 1, got \(s.channels)") }
        for (a, b) in zip(stages, stages.dropFirst()) {
            guard b.epoch > a.epoch else { throw fail("epochs must increase, got \(b.epoch) after \(a.epoch)") }
            guard b.channels > a.channels else {
                throw fail("widths must increase (a supernet is only ever widened), got \(b.channels) after \(a.channels)")
            }
        }
    }

    /// Checks the schedule against a run of `epochs` epochs and `--channels` `channels`.
    public func validate(epochs: Int, channels: Int) throws {
        func fail(_ m: String) -> SearchConfigError { SearchConfigError("--channel-schedule \(description): " + m) }
        if let late = stages.first(where: { $0.epoch >= epochs }) {
            throw fail("epoch \(late.epoch) lies beyond the run's \(epochs) epochs (0 to \(epochs - 1)), so C=\(late.channels) would never be reached")
        }
        guard finalChannels == channels else {
            throw fail("the last width \(finalChannels) is the run's --channels, which is \(channels); leave --channels out or make them equal")
        }
    }

    // MARK: Codable (the text form, in config.json)

    public init(from decoder: Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public static func == (a: ChannelSchedule, b: ChannelSchedule) -> Bool { a.description == b.description }
}
