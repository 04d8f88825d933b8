/// The standard library's functions. Defined once here: the compiler type-checks calls against
/// `signature`, the VM runs them in `Builtins.swift`, and bytecode stores the raw value.
public enum Builtin: UInt8, Sendable, Hashable, CaseIterable {
    // text
    case lower, upper, trim, contains, startsWith, endsWith, replace, split, len, string
    // numbers
    case parseNumber, round, formatNumber, abs, min, max
    // dates
    case now, parseDate, dateAdd, formatDate
    // lists
    case first, last, join, count

    /// The static type of a value, as the compiler's checker sees it.
    public enum ValueType: String, Sendable, Hashable {
        case null, bool, number, string, list, map, any
    }

    /// Parameter and result types of a function; `optional` trailing parameters may be left out.
    public struct Signature: Sendable {
        public let parameters: [ValueType]
        public let optional: Int
        public let result: ValueType
    }

    /// The function's name in the language.
    public var name: String {
        switch self {
        case .lower: "lower"
        case .upper: "upper"
        case .trim: "trim"
        case .contains: "contains"
        case .startsWith: "starts_with"
        case .endsWith: "ends_with"
        case .replace: "replace"
        case .split: "split"
        case .len: "len"
        case .string: "string"
        case .parseNumber: "parse_number"
        case .round: "round"
        case .formatNumber: "format_number"
        case .abs: "abs"
        case .min: "min"
        case .max: "max"
        case .now: "now"
        case .parseDate: "parse_date"
        case .dateAdd: "date_add"
        case .formatDate: "format_date"
        case .first: "first"
        case .last: "last"
        case .join: "join"
        case .count: "count"
        }
    }

    /// Looks a function up by its name in the language.
    public static func named(_ name: String) -> Builtin? { byName[name] }
    private static let byName: [String: Builtin] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.name, $0) })

    public var signature: Signature {
        switch self {
        case .lower, .upper, .trim: Signature(parameters: [.string], optional: 0, result: .string)
        case .contains: Signature(parameters: [.any, .any], optional: 0, result: .bool)
        case .startsWith, .endsWith: Signature(parameters: [.string, .string], optional: 0, result: .bool)
        case .replace: Signature(parameters: [.string, .string, .string], optional: 0, result: .string)
        case .split: Signature(parameters: [.string, .string], optional: 0, result: .list)
        case .len: Signature(parameters: [.any], optional: 0, result: .number)
        case .string: Signature(parameters: [.any], optional: 0, result: .string)
        case .parseNumber: Signature(parameters: [.string, .string], optional: 1, result: .any)
        case .round: Signature(parameters: [.number, .number], optional: 1, result: .number)
        case .formatNumber: Signature(parameters: [.number, .number, .string], optional: 2, result: .string)
        case .abs: Signature(parameters: [.number], optional: 0, result: .number)
        case .min, .max: Signature(parameters: [.number, .number], optional: 0, result: .number)
        case .now: Signature(parameters: [], optional: 0, result: .string)
        case .parseDate: Signature(parameters: [.string, .string, .string], optional: 2, result: .any)
        case .dateAdd: Signature(parameters: [.string, .string], optional: 0, result: .string)
        case .formatDate: Signature(parameters: [.string, .string, .string, .string], optional: 2, result: .string)
        case .first, .last: Signature(parameters: [.list], optional: 0, result: .any)
        case .join: Signature(parameters: [.list, .string], optional: 1, result: .string)
        case .count: Signature(parameters: [.list], optional: 0, result: .number)
        }
    }
}
