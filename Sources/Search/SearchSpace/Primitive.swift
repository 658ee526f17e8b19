/// The operations of the reference `OPS` table (quark0/darts `operations.py`), keyed by the
/// reference's names. A search space is an ordered subset of them (`Primitive.darts`, the DARTS
/// cell search space, is the default); alphas index a search space's ops in its order.
public enum Primitive: String, CaseIterable, Codable, Sendable {
    case none = "none"
    case maxPool3x3 = "max_pool_3x3"
    case avgPool3x3 = "avg_pool_3x3"
    case skipConnect = "skip_connect"
    case sepConv3x3 = "sep_conv_3x3"
    case sepConv5x5 = "sep_conv_5x5"
    case dilConv3x3 = "dil_conv_3x3"
    case dilConv5x5 = "dil_conv_5x5"
    /// In the reference table but not in the DARTS search space (NASNet and AmoebaNet use them).
    case sepConv7x7 = "sep_conv_7x7"
    case conv7x1_1x7 = "conv_7x1_1x7"

    /// The DARTS search space, in the order of the reference `genotypes.PRIMITIVES`.
    public static let darts: [Primitive] = [.none, .maxPool3x3, .avgPool3x3, .skipConnect, .sepConv3x3, .sepConv5x5,
                                            .dilConv3x3, .dilConv5x5]

    /// The reference name, e.g. `sep_conv_3x3`.
    public var name: String { rawValue }

    /// Whether the op has no parameters (pooling, identity, none): the ops DARTS collapses onto.
    public var isParameterFree: Bool { [.none, .maxPool3x3, .avgPool3x3, .skipConnect].contains(self) }

    /// Looks a primitive up by its reference name.
    /// - Throws: `SearchSpaceError.unknownPrimitive` listing the valid names.
    public init(name: String) throws {
        guard let p = Primitive(rawValue: name) else {
            throw SearchSpaceError.unknownPrimitive(name)
        }
        self = p
    }
}

/// An error in a search-space description (an op list, a genotype).
public enum SearchSpaceError: Error, Equatable, CustomStringConvertible {
    case unknownPrimitive(String)

    public var description: String {
        switch self {
        case let .unknownPrimitive(name):
            return "unknown operation '\(name)'; the operations are \(Primitive.allCases.map(\.name).joined(separator: ", "))"
        }
    }
}
