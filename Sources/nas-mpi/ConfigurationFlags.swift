import ArgumentParser
import Foundation

/// Resume refusals derived from the configuration types: the command applies its flags on top of
/// the saved configuration exactly as it would on top of a preset, and every field that changes
/// is named with its flag. A flag that maps to a configuration field can therefore never be
/// silently ignored by `--resume`, and a new field needs no list of flags to be kept in sync.
enum ConfigurationFlags {
    /// The flags whose values would change `saved`, with the saved and the given values.
    static func changes<C: Encodable>(from saved: C, to resolved: C) throws -> [String] {
        let a = try JSONSerialization.jsonObject(with: JSONEncoder().encode(saved))
        let b = try JSONSerialization.jsonObject(with: JSONEncoder().encode(resolved))
        var out: [String] = []
        diff(a, b, path: [], into: &out)
        return out
    }

    /// Refuses a resume whose flags would change the saved configuration.
    static func requireUnchanged<C: Encodable>(saved: C, resolved: C) throws {
        let changed = try changes(from: saved, to: resolved)
        guard changed.isEmpty else {
            throw ValidationError("--resume continues the configuration saved in config.json; these flags would change it: \(changed.joined(separator: "; ")). Drop them, or start a new run with another --out")
        }
    }

    private static func diff(_ a: Any?, _ b: Any?, path: [String], into out: inout [String]) {
        if let da = a as? [String: Any], let db = b as? [String: Any] {
            for key in Set(da.keys).union(db.keys).sorted() { diff(da[key], db[key], path: path + [key], into: &out) }
            return
        }
        let (sa, sb) = (render(a), render(b))
        if sa != sb { out.append("\(flag(path)) (saved \(sa), given \(sb))") }
    }

    private static func render(_ v: Any?) -> String {
        guard let v, !(v is NSNull) else { return "none" }
        if let s = v as? String { return s }
        if let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(v)"
    }

    /// The command-line flag of a configuration field: its name in kebab case, except where the
    /// flag is named differently.
    static func flag(_ path: [String]) -> String {
        let renamed: [String: String] = [
            "data.kind": "--dataset", "data.path": "--data", "data.testPath": "--test-data", "data.imageShape": "--input", "data.syntheticClasses": "--classes",
            "syncBatchNorm": "--sync-bn", "genotypeSource": "--genotype", "genotype": "--genotype",
        ]
        let key = path.joined(separator: ".")
        if let f = renamed[key] { return f }
        let last = path.last ?? key
        var kebab = ""
        for ch in last {
            if ch.isUppercase { kebab += "-" + ch.lowercased() } else { kebab.append(ch) }
        }
        return "--" + kebab
    }
}
