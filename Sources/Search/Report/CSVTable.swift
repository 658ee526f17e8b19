import Foundation

/// A table written as CSV (RFC 4180): a header row, then rows; a field holding a comma, a quote,
/// a line break or surrounding spaces is quoted, with quotes doubled.
public struct CSVTable: Equatable {
    public var header: [String]
    public var rows: [[String]]

    public init(header: [String], rows: [[String]] = []) {
        self.header = header
        self.rows = rows
    }

    public mutating func append(_ row: [String]) {
        precondition(row.count == header.count, "a CSV row of \(row.count) fields under a header of \(header.count)")
        rows.append(row)
    }

    public static func field(_ s: String) -> String {
        let needsQuotes = s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
            || s.first == " " || s.last == " "
        return needsQuotes ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    /// A number as CSV holds it: full precision, empty when unknown.
    public static func number(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
        return "\(v)"
    }

    public var text: String {
        ([header] + rows).map { $0.map(Self.field).joined(separator: ",") + "\r\n" }.joined()
    }

    /// Parses CSV text as `text` writes it (quoted fields, doubled quotes, CRLF or LF).
    public static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var quoted = false, i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if quoted {
                if c == "\"" {
                    let n = text.index(after: i)
                    if n < text.endIndex && text[n] == "\"" { field.append("\""); i = n } else { quoted = false }
                } else { field.append(c) }
            } else if c == "\"" { quoted = true }
            else if c == "," { row.append(field); field = "" }
            else if c == "\n" || c == "\r\n" { row.append(field); rows.append(row); row = []; field = "" }
            else if c != "\r" { field.append(c) }
            i = text.index(after: i)
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
