import FlowVM
import Foundation

/// Reads a YAML or JSON data file (mocks, fixtures) into a `Value`, typing plain scalars as the flow language does:
/// numbers, `true`/`false` and `null` keep their type; all other text, and anything quoted, is text.
public enum DataDocument {
    public static func value(from source: String, file: String) throws -> Value {
        switch SourceNode.parse(source) {
        case .failure(let e):
            throw FlowCompilerError(.invalidFlow, diagnostics: [Diagnostic(.error, e.code ?? "syntax", e.message, file: file, at: e.location)])
        case .success(nil): return .null
        case .success(let node?): return convert(node)
        }
    }

    /// Reads an ISO 8601 instant (`2026-01-05T12:00:00Z`).
    public static func timestamp(_ given: String) -> Timestamp? {
        // RFC 3339 exactly, as JSON Schema's date-time says (the formatter alone takes February 30 as March 2).
        guard given.utf8.count <= 64,
              given.range(of: #"^\d{4}-\d{2}-\d{2}[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"#,
                          options: .regularExpression) != nil,
              ContactAttributes.isDate(String(given.prefix(10))) else { return nil }
        // A leap second is read as the second before it.
        var text = given.uppercased()
        if text.dropFirst(17).hasPrefix("60") { text = String(text.prefix(17)) + "59" + text.dropFirst(19) }
        let f = ISO8601DateFormatter()
        if let d = f.date(from: text) { return Timestamp(d) }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // Keep milliseconds: some formatters refuse more fractional digits than three.
        let trimmed = text.replacingOccurrences(of: #"(\.\d{3})\d+"#, with: "$1", options: .regularExpression)
        return f.date(from: trimmed).map(Timestamp.init)
    }

    private static func convert(_ node: SourceNode) -> Value {
        switch node {
        case .scalar(let s):
            if s.quoted { return .string(s.text) }
            switch s.text {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "null", "~", "": return .null
            default:
                if let n = Double(s.text), s.text.first.map({ $0.isNumber || $0 == "-" }) == true { return .number(n) }
                return .string(s.text)
            }
        case .sequence(let items, _): return .list(items.map(convert))
        case .mapping(let entries, _):
            return .map(Dictionary(entries.map { ($0.key, convert($0.value)) }, uniquingKeysWith: { _, b in b }))
        }
    }
}
