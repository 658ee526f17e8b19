/// swift-argument-parser reads a word that starts with a dash as a flag, so `--epochs -3` ends in
/// "Missing value for '--epochs <epochs>'" and the user never learns that the value was the problem.
/// Attaching such a value to its option (`--epochs=-3`) lets it reach `validate()`, which names the
/// flag and the allowed range. No nas-mpi flag is spelt like a number, so the rewrite is unambiguous.
enum NegativeValues {
    /// The arguments with every negative number that follows a long option attached to it.
    static func attached(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            if word == "--" { return result + arguments[i...] }
            if word.hasPrefix("--"), !word.contains("="), i + 1 < arguments.count, isNegativeNumber(arguments[i + 1]) {
                result.append(word + "=" + arguments[i + 1])
                i += 2
            } else {
                result.append(word)
                i += 1
            }
        }
        return result
    }

    /// "-3", "-0.5", "-.5", "-1e-3", "-inf": what `Int` or `Double` would read as a negative value.
    static func isNegativeNumber(_ word: String) -> Bool {
        guard word.hasPrefix("-"), word.count > 1, !word.hasPrefix("--") else { return false }
        return Double(word) != nil
    }
}
