import Foundation
import Kernels

/// A discrete cell architecture (reference `genotypes.Genotype`): for each intermediate node two
/// (op, input) pairs, for the normal and the reduction cell, and which nodes the cell outputs.
/// Inputs 0 and 1 are the two cell inputs; input 2 + i is intermediate node i.
public struct Genotype: Equatable, Sendable {
    public struct Edge: Equatable, Sendable {
        public var op: Primitive
        public var input: Int
        public init(_ op: Primitive, _ input: Int) { self.op = op; self.input = input }
    }

    public var normal: [Edge]
    public var normalConcat: [Int]
    public var reduce: [Edge]
    public var reduceConcat: [Int]

    /// Builds and validates a genotype.
    public init(normal: [Edge], normalConcat: [Int], reduce: [Edge], reduceConcat: [Int]) throws {
        self.normal = normal
        self.normalConcat = normalConcat
        self.reduce = reduce
        self.reduceConcat = reduceConcat
        try validate()
    }

    /// Intermediate nodes per cell.
    public var steps: Int { normal.count / 2 }

    /// Checks node counts, input indices, concat lists and ops.
    public func validate() throws {
        for (name, edges, concat) in [("normal", normal, normalConcat), ("reduce", reduce, reduceConcat)] {
            guard !edges.isEmpty, edges.count % 2 == 0 else {
                throw GenotypeError("\(name) cell has \(edges.count) edges; a cell has two per intermediate node")
            }
            let steps = edges.count / 2
            for (k, e) in edges.enumerated() {
                let node = k / 2
                guard e.op != .none else { throw GenotypeError("\(name) edge \(k) uses 'none', which a derived cell never contains") }
                guard e.input >= 0 && e.input < node + 2 else {
                    throw GenotypeError("\(name) edge \(k) ('\(e.op.name)', \(e.input)) feeds node \(node + 2) from node \(e.input), which does not exist before it (valid inputs: 0...\(node + 1))")
                }
            }
            guard !concat.isEmpty, concat.allSatisfy({ $0 >= 2 && $0 < steps + 2 }), Set(concat).count == concat.count else {
                throw GenotypeError("\(name)_concat \(concat) must list distinct intermediate nodes in 2...\(steps + 1)")
            }
        }
        guard normal.count == reduce.count else {
            throw GenotypeError("normal cell has \(normal.count / 2) nodes but reduce cell has \(reduce.count / 2)")
        }
    }

    // MARK: Derivation

    /// The reference derivation (`model_search.Network.genotype`) from raw alphas: softmax each
    /// edge's alphas, then `DerivationPolicy` with the same ops on every edge and no edge weights.
    ///
    /// - Parameters:
    ///   - normal, reduce: raw alphas [edges, K].
    ///   - primitives: the K ops the columns stand for.
    public static func derive(normal: Tensor, reduce: Tensor, primitives: [Primitive], steps: Int) throws -> Genotype {
        let tape = Tape(recording: false)
        let policy = DerivationPolicy(space: .uniform(primitives, edges: SearchCell.edgeCount(steps: steps)), steps: steps)
        return try policy.derive(normal: CellStrengths(ops: try tape.softmax(Variable(normal)).value),
                                 reduce: CellStrengths(ops: try tape.softmax(Variable(reduce)).value))
    }

    // MARK: Text forms

    /// The reference's Python form:
    /// `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...], reduce_concat=range(2, 6))`.
    public var pythonDescription: String {
        func edges(_ es: [Edge]) -> String { "[" + es.map { "('\($0.op.name)', \($0.input))" }.joined(separator: ", ") + "]" }
        func concat(_ c: [Int]) -> String {
            if let f = c.first, c == Array(f..<(f + c.count)) { return "range(\(f), \(f + c.count))" }
            return "[" + c.map(String.init).joined(separator: ", ") + "]"
        }
        return "Genotype(normal=\(edges(normal)), normal_concat=\(concat(normalConcat)), reduce=\(edges(reduce)), reduce_concat=\(concat(reduceConcat)))"
    }

    /// Parses the Python form, with or without a `NAME = ` prefix; concat as `range(a, b)` or a list.
    public init(python text: String) throws {
        let body = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let open = body.range(of: "Genotype("), body.hasSuffix(")") else {
            throw GenotypeError("not a genotype: expected 'Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)'")
        }
        let inner = String(body[open.upperBound..<body.index(before: body.endIndex)])
        func field(_ name: String) throws -> String {
            guard let r = inner.range(of: #"(?<![a-z_])"# + name + #"\s*=\s*"#, options: .regularExpression) else {
                throw GenotypeError("genotype lacks the field '\(name)'")
            }
            // The value runs to the bracket or parenthesis that closes it.
            var depth = 0
            var end = r.upperBound
            for idx in inner[r.upperBound...].indices {
                let ch = inner[idx]
                if ch == "[" || ch == "(" { depth += 1 }
                if ch == "]" || ch == ")" { depth -= 1 }
                end = inner.index(after: idx)
                if depth == 0 && (ch == "]" || ch == ")") { break }
                if depth < 0 { throw GenotypeError("unbalanced brackets in field '\(name)'") }
            }
            guard depth == 0 else { throw GenotypeError("unbalanced brackets in field '\(name)'") }
            return String(inner[r.upperBound..<end])
        }
        func edges(_ name: String) throws -> [Edge] {
            let v = try field(name).trimmingCharacters(in: .whitespaces)
            guard v.hasPrefix("["), v.hasSuffix("]") else { throw GenotypeError("field '\(name)' must be a list of ('op', input) pairs") }
            let items = v.dropFirst().dropLast().trimmingCharacters(in: .whitespacesAndNewlines)
            if items.isEmpty { return [] }
            let regex = try NSRegularExpression(pattern: #"\(\s*['"]([A-Za-z0-9_]+)['"]\s*,\s*(-?\d+)\s*\)"#)
            let ns = items as NSString
            let matches = regex.matches(in: items, range: NSRange(location: 0, length: ns.length))
            let leftover = regex.stringByReplacingMatches(in: items, range: NSRange(location: 0, length: ns.length), withTemplate: "")
            guard leftover.allSatisfy({ $0 == "," || $0.isWhitespace }) else {
                throw GenotypeError("field '\(name)' has entries that are not ('op', input) pairs: \(leftover.trimmingCharacters(in: .whitespaces))")
            }
            return try matches.map { m in
                let op = ns.substring(with: m.range(at: 1))
                guard let p = Primitive(rawValue: op) else { throw GenotypeError(SearchSpaceError.unknownPrimitive(op).description) }
                return Edge(p, Int(ns.substring(with: m.range(at: 2)))!)
            }
        }
        func concat(_ name: String) throws -> [Int] {
            let v = try field(name).replacingOccurrences(of: " ", with: "")
            if v.hasPrefix("range("), v.hasSuffix(")") {
                let args = v.dropFirst(6).dropLast().split(separator: ",").compactMap { Int($0) }
                guard args.count == 2, args[0] < args[1] else { throw GenotypeError("field '\(name)' has a bad range: \(v)") }
                return Array(args[0]..<args[1])
            }
            guard v.hasPrefix("["), v.hasSuffix("]") else { throw GenotypeError("field '\(name)' must be range(a, b) or a list, got \(v)") }
            let parts = v.dropFirst().dropLast().split(separator: ",")
            let values = parts.compactMap { Int($0) }
            guard values.count == parts.count else { throw GenotypeError("field '\(name)' must list integers, got \(v)") }
            return values
        }
        try self.init(normal: try edges("normal"), normalConcat: try concat("normal_concat"),
                      reduce: try edges("reduce"), reduceConcat: try concat("reduce_concat"))
    }

    // MARK: Built-in genotypes

    /// DARTS (first order) from the paper, reference `genotypes.DARTS_V1`.
    public static let dartsV1 = try! Genotype(python: "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])")

    /// DARTS (second order) from the paper, reference `genotypes.DARTS_V2`.
    public static let dartsV2 = try! Genotype(python: "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")

    /// NASNet-A (Zoph et al. 2018) as the reference `genotypes.NASNet` writes it: 5-node cells,
    /// the reduction cell concatenating nodes 4, 5, 6 only.
    public static let nasnet = try! Genotype(python: "Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), ('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 1)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), ('max_pool_3x3', 1), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 0), ('skip_connect', 3), ('avg_pool_3x3', 2), ('sep_conv_3x3', 2), ('max_pool_3x3', 1)], reduce_concat=[4, 5, 6])")

    /// AmoebaNet-A (Real et al. 2019) as the reference `genotypes.AmoebaNet` writes it.
    public static let amoebaNet = try! Genotype(python: "Genotype(normal=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3', 1), ('skip_connect', 1), ('skip_connect', 0), ('avg_pool_3x3', 1)], normal_concat=[4, 5, 6], reduce=[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0), ('sep_conv_7x7', 2), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1), ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5)], reduce_concat=[3, 4, 6])")

    /// Genotypes known by name.
    public static let builtIn: [String: Genotype] = ["DARTS_V1": dartsV1, "DARTS_V2": dartsV2, "DARTS": dartsV2,
                                                     "NASNet": nasnet, "AmoebaNet": amoebaNet]

    /// A genotype from a built-in name, a JSON file or a file holding the Python form.
    public static func load(_ nameOrPath: String) throws -> Genotype {
        if let g = builtIn[nameOrPath] { return g }
        guard FileManager.default.fileExists(atPath: nameOrPath) else {
            throw GenotypeError("'\(nameOrPath)' is neither a built-in genotype (\(builtIn.keys.sorted().joined(separator: ", "))) nor a file")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: nameOrPath, isDirectory: &isDirectory), isDirectory.boolValue {
            throw GenotypeError("\(nameOrPath) is a directory; give its genotype.json (or genotype.txt)")
        }
        guard let data = FileManager.default.contents(atPath: nameOrPath) else {
            throw GenotypeError("cannot read genotype file \(nameOrPath): \(String(cString: strerror(access(nameOrPath, R_OK) == 0 ? EIO : errno)))")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        do {
            if text.hasPrefix("{") { return try JSONDecoder().decode(Genotype.self, from: data) }
            return try Genotype(python: text)
        } catch let e as GenotypeError {
            throw GenotypeError("\(nameOrPath): \(e.description)")
        } catch let e as DecodingError {
            if case .dataCorrupted(let ctx) = e, ctx.codingPath.isEmpty {
                throw GenotypeError("\(nameOrPath): not valid genotype JSON: \(ctx.debugDescription)")
            }
            throw GenotypeError("\(nameOrPath): not a valid genotype: \(e.message)")
        } catch {
            throw GenotypeError("\(nameOrPath): not a valid genotype: \(error)")
        }
    }
}

/// A malformed genotype.
public struct GenotypeError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: JSON: {"normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5], ...}

extension Genotype: Codable {
    private enum CodingKeys: String, CodingKey {
        case normal, reduce
        case normalConcat = "normal_concat"
        case reduceConcat = "reduce_concat"
    }

    private struct PairList: Codable {
        var pairs: [Edge]
        init(_ pairs: [Edge]) { self.pairs = pairs }
        init(from decoder: Decoder) throws {
            var c = try decoder.unkeyedContainer()
            var pairs: [Edge] = []
            while !c.isAtEnd {
                var pair = try c.nestedUnkeyedContainer()
                let name = try pair.decode(String.self)
                let input = try Self.decodeInput(&pair, cell: decoder.codingPath.last?.stringValue ?? "cell", edge: pairs.count)
                guard pair.isAtEnd else { throw GenotypeError("a genotype edge must be [\"op\", input]") }
                guard let p = Primitive(rawValue: name) else { throw GenotypeError(SearchSpaceError.unknownPrimitive(name).description) }
                pairs.append(Edge(p, input))
            }
            self.pairs = pairs
        }
        /// An input index; a number that is no index (1e30, 2.5) is named as such rather than
        /// reported as invalid JSON.
        private static func decodeInput(_ pair: inout UnkeyedDecodingContainer, cell: String, edge: Int) throws -> Int {
            if let i = try? pair.decode(Int.self) { return i }
            let v = try pair.decode(Double.self)
            guard v == v.rounded() else { throw GenotypeError("input index \(v) of \(cell) edge \(edge) is not a whole number") }
            guard abs(v) < 1e9 else {
                throw GenotypeError("input index \(v) of \(cell) edge \(edge) is out of range (valid inputs: 0...\(edge / 2 + 1))")
            }
            return Int(v)
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.unkeyedContainer()
            for e in pairs {
                var pair = c.nestedUnkeyedContainer()
                try pair.encode(e.op.name)
                try pair.encode(e.input)
            }
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(normal: try c.decode(PairList.self, forKey: .normal).pairs,
                      normalConcat: try c.decode([Int].self, forKey: .normalConcat),
                      reduce: try c.decode(PairList.self, forKey: .reduce).pairs,
                      reduceConcat: try c.decode([Int].self, forKey: .reduceConcat))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(PairList(normal), forKey: .normal)
        try c.encode(normalConcat, forKey: .normalConcat)
        try c.encode(PairList(reduce), forKey: .reduce)
        try c.encode(reduceConcat, forKey: .reduceConcat)
    }
}
