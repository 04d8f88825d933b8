import Foundation

/// Checks a reply against an `ask` block's validation spec and converts it to its typed value.
///
/// The spec is a map the compiler lays out: `type` (text, number, integer, email, phone, date, yes_no,
/// choice, any), `min_length`, `max_length`, `min`, `max`, `pattern`, and `choices` (a list of
/// `{id, title}` from buttons or list rows).
public enum Validation {
    /// Types an `ask` can validate as.
    public static let types: Set<String> = ["text", "number", "integer", "email", "phone", "date", "yes_no", "choice", "any"]

    /// The typed value of `message` (the `message` variable), or nil when it is not valid.
    public static func check(_ message: Value, spec: Value) -> Value? {
        let raw = message["text"].text
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        let type = spec["type"] == .null ? "text" : spec["type"].text

        if case .list(let choices) = spec["choices"], !choices.isEmpty {
            return choose(text, payload: message["payload"], choices: choices)
        }
        if type != "any", type != "text", text.isEmpty { return nil }
        if case .string(let pattern) = spec["pattern"], (try? Operators.regexMatches(text, pattern)) != true { return nil }

        switch type {
        case "any":
            return message["kind"].text == "text" || message["kind"] == .null ? .string(raw) : message
        case "text":
            let n = Double(text.count)
            if case .number(let min) = spec["min_length"] { if n < min { return nil } } else if text.isEmpty { return nil }
            if case .number(let max) = spec["max_length"], n > max { return nil }
            return .string(text)
        case "number", "integer":
            guard let n = NumberFunctions.parse(text, locale: nil) else { return nil }
            if type == "integer", n != n.rounded() { return nil }
            if case .number(let min) = spec["min"], n < min { return nil }
            if case .number(let max) = spec["max"], n > max { return nil }
            return .number(n)
        case "email":
            guard (try? Operators.regexMatches(text, #"^[^@\s]+@[^@\s]+\.[^@\s]+$"#)) == true else { return nil }
            return .string(text.lowercased())
        case "phone":
            let plus = text.hasPrefix("+")
            let digits = text.filter(\.isASCII).filter(\.isNumber)
            let allowed = text.allSatisfy { $0.isNumber || " +-().".contains($0) }
            guard allowed, (8...15).contains(digits.count) else { return nil }
            return .string((plus ? "+" : "") + digits)
        case "date":
            guard let t = DateFunctions.parse(text, format: nil, timezone: spec["timezone"] == .null ? "UTC" : spec["timezone"].text)
            else { return nil }
            return .string(t.iso8601)
        case "yes_no":
            let yes: Set<String> = ["yes", "y", "sim", "s", "si", "sí", "ok", "1", "true"]
            let no: Set<String> = ["no", "n", "não", "nao", "0", "false"]
            let t = text.lowercased()
            if yes.contains(t) { return .bool(true) }
            if no.contains(t) { return .bool(false) }
            return nil
        default:
            return nil
        }
    }

    /// Matches a reply to a button or list row: by payload id, by title (ignoring case and accents) or by number.
    private static func choose(_ text: String, payload: Value, choices: [Value]) -> Value? {
        func fold(_ s: String) -> String {
            s.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil).trimmingCharacters(in: .whitespaces)
        }
        if case .string(let p) = payload, let c = choices.first(where: { $0["id"].text == p }) { return c["value"] }
        let t = fold(text)
        if let c = choices.first(where: { fold($0["title"].text) == t || fold($0["id"].text) == t }) { return c["value"] }
        if let n = Int(t), n >= 1, n <= choices.count { return choices[n - 1]["value"] }
        return nil
    }
}
