/// Messages for JSON a user wrote or a run saved: the field and what was wrong with it, without
/// the decoder's internals (`CodingKeys(stringValue: ...)`, `Swift.DecodingError.Context`).
extension DecodingError {
    /// "lacks the field 'genotypeSource'", "field 'normal[3]' must be a list", ...
    public var message: String {
        switch self {
        case .keyNotFound(let key, let ctx):
            return "lacks the field '\(Self.path(ctx.codingPath + [key]))'"
        case .typeMismatch(let type, let ctx):
            return "field '\(Self.path(ctx.codingPath))' must be \(Self.describe(type))"
        case .valueNotFound(let type, let ctx):
            return "field '\(Self.path(ctx.codingPath))' is null; it must be \(Self.describe(type))"
        case .dataCorrupted(let ctx):
            if ctx.codingPath.isEmpty { return "is not valid JSON (\(ctx.debugDescription))" }
            return "field '\(Self.path(ctx.codingPath))' has an invalid value (\(ctx.debugDescription))"
        @unknown default:
            return "cannot be read (\(self))"
        }
    }

    /// `normal[3][1]` for the keys normal, 3, 1.
    static func path(_ keys: [CodingKey]) -> String {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
        }
        return s.isEmpty ? "(top level)" : s
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int64.Type, is UInt64.Type, is Int32.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a value of type \(name)"
        }
    }
}
