/// The candidate operations of the DARTS cell search space (Liu et al., ICLR 2019), in the order
/// of the reference `genotypes.PRIMITIVES`; alphas index ops in this order.
public enum Primitive: String, CaseIterable, Codable, Sendable {
    case none = "none"
    case maxPool3x3 = "max_pool_3x3"
    case avgPool3x3 = "avg_pool_3x3"
    case skipConnect = "skip_connect"
    case sepConv3x3 = "sep_conv_3x3"
    case sepConv5x5 = "sep_conv_5x5"
    case dilConv3x3 = "dil_conv_3x3"
    case dilConv5x5 = "dil_conv_5x5"

    /// The reference name, e.g. `sep_conv_3x3`.
    public var name: String { rawValue }

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
            return "unknown operation '\(name)'; the DARTS primitives are \(Primitive.allCases.map(\.name).joined(separator: ", "))"
        }
    }
}
