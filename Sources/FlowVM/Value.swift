import Foundation

/// A dynamically typed value a flow computes with: the only data the VM knows.
public enum Value: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case list([Value])
    case map([String: Value])

    /// The name of this value's type, as the language and its diagnostics spell it.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .list: "list"
        case .map: "map"
        }
    }

    /// Truthiness used by conditions: null, false, 0, "" and empty collections are false.
    public var isTruthy: Bool {
        switch self {
        case .null: false
        case .bool(let b): b
        case .number(let n): n != 0 && !n.isNaN
        case .string(let s): !s.isEmpty
        case .list(let l): !l.isEmpty
        case .map(let m): !m.isEmpty
        }
    }

    /// The text of a non-empty string value; nil for anything else (a missing parameter, an empty field).
    public var nonEmptyText: String? {
        if case .string(let s) = self, !s.isEmpty { return s }
        return nil
    }

    /// The text a template shows for this value.
    public var text: String {
        switch self {
        case .null: ""
        case .bool(let b): b ? "true" : "false"
        case .number(let n): Value.formatNumber(n)
        case .string(let s): s
        case .list, .map: jsonText
        }
    }

    /// Numbers print without a trailing `.0` when integral, so `{{ 3 }}` shows `3`.
    public static func formatNumber(_ n: Double) -> String {
        if n.isNaN { return "NaN" }
        if n.isInfinite { return n > 0 ? "Infinity" : "-Infinity" }
        if n == n.rounded(), abs(n) < 1e15 { return String(Int64(n)) }
        return String(n)
    }

    /// Canonical JSON with sorted keys, so equal values always print the same.
    public var jsonText: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    private func writeJSON(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.isFinite ? Value.formatNumber(n) : "null"
        case .string(let s): Value.writeJSONString(s, into: &out)
        case .list(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.writeJSON(into: &out)
            }
            out += "]"
        case .map(let m):
            out += "{"
            for (i, key) in m.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                Value.writeJSONString(key, into: &out)
                out += ":"
                m[key]!.writeJSON(into: &out)
            }
            out += "}"
        }
    }

    private static func writeJSONString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// Parses JSON text into a value; nil when the text is not JSON, repeats a key in an object, or nests deeper
    /// than `ValueLimits.maxDepth`.
    public init?(json: String) {
        guard case .success(let v) = Value.parse(json: json) else { return nil }
        self = v
    }

    /// Parses JSON text strictly, saying why it was refused: a repeated key is an error, not "the last one wins"
    /// (a body `{"role": "agent", "role": "admin"}` must not be read as either).
    public static func parse(json: String) -> Result<Value, JSONProblem> {
        var parser = JSONParser(Array(json.utf8))
        guard let v = parser.parseDocument() else {
            return .failure(parser.problem ?? JSONProblem(reason: "not valid JSON", offset: parser.offset))
        }
        return .success(v)
    }

    /// The list item at `index`, or null.
    public subscript(index: Int) -> Value {
        if case .list(let l) = self, index >= 0, index < l.count { return l[index] }
        return .null
    }

    /// Member access as `value.name` evaluates it: maps only, missing keys are null.
    public subscript(key: String) -> Value {
        if case .map(let m) = self { return m[key] ?? .null }
        return .null
    }
}

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: Value...) { self = .list(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) {
        self = .map(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension Value: CustomStringConvertible {
    public var description: String {
        if case .string(let s) = self { return "\"\(s)\"" }
        return jsonText
    }
}

/// Why a JSON text was refused, and the byte where it was noticed.
public struct JSONProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public var offset: Int
    public var description: String { "\(reason) (at byte \(offset))" }
}
