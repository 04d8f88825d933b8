import Foundation

extension Builtin {
    /// Runs the function; returns its result and the fuel it cost beyond one instruction.
    func apply(_ args: [Value], now: Timestamp) throws -> (Value, Int) {
        func arg(_ i: Int) -> Value { i < args.count ? args[i] : .null }
        func text(_ i: Int) throws -> String {
            switch arg(i) {
            case .string(let s): return s
            case .null: return ""
            case .number, .bool: return arg(i).text
            default: throw Operators.error("\(name)() needs text as argument \(i + 1), got a \(arg(i).typeName)")
            }
        }
        func number(_ i: Int) throws -> Double {
            guard case .number(let n) = arg(i) else {
                throw Operators.error("\(name)() needs a number as argument \(i + 1), got a \(arg(i).typeName)")
            }
            return n
        }
        func list(_ i: Int) throws -> [Value] {
            switch arg(i) {
            case .list(let l): return l
            case .null: return []
            default: throw Operators.error("\(name)() needs a list as argument \(i + 1), got a \(arg(i).typeName)")
            }
        }
        func cost(_ s: String) -> Int { s.utf8.count / 256 }

        switch self {
        case .lower: let s = try text(0); return (.string(s.lowercased()), cost(s))
        case .upper: let s = try text(0); return (.string(s.uppercased()), cost(s))
        case .trim: let s = try text(0); return (.string(s.trimmingCharacters(in: .whitespacesAndNewlines)), cost(s))
        case .contains:
            let (v, c) = try Operators.binary(.contains, arg(1), arg(0))
            return (v, c)
        case .startsWith: return (.bool(try text(0).hasPrefix(try text(1))), 0)
        case .endsWith: return (.bool(try text(0).hasSuffix(try text(1))), 0)
        case .replace:
            let s = try text(0), from = try text(1)
            guard !from.isEmpty else { return (.string(s), 0) }
            let r = s.replacingOccurrences(of: from, with: try text(2))
            try Operators.checkSize(r)
            return (.string(r), cost(r))
        case .split:
            let s = try text(0), sep = try text(1)
            let parts: [Value] = sep.isEmpty
                ? s.map { .string(String($0)) }
                : s.components(separatedBy: sep).map { .string($0) }
            try Operators.checkSize(parts)
            return (.list(parts), cost(s))
        case .len:
            switch arg(0) {
            case .string(let s): return (.number(Double(s.count)), cost(s))
            case .list(let l): return (.number(Double(l.count)), 0)
            case .map(let m): return (.number(Double(m.count)), 0)
            case .null: return (.number(0), 0)
            default: throw Operators.error("len() needs text, a list or a map, got a \(arg(0).typeName)")
            }
        case .string: return (.string(arg(0).text), 0)
        case .parseNumber:
            return (NumberFunctions.parse(try text(0), locale: args.count > 1 ? try text(1) : nil).map(Value.number) ?? .null, 0)
        case .round:
            let digits = args.count > 1 ? try number(1) : 0
            guard (0...10).contains(digits) else { throw Operators.error("round() digits must be 0 to 10") }
            let f = pow(10, digits.rounded())
            return (.number((try number(0) * f).rounded(.toNearestOrAwayFromZero) / f), 0)
        case .formatNumber:
            let decimals = args.count > 1 ? try number(1) : 0
            guard (0...10).contains(decimals) else { throw Operators.error("format_number() decimals must be 0 to 10") }
            return (.string(NumberFunctions.format(try number(0), decimals: Int(decimals), locale: args.count > 2 ? try text(2) : "en_US")), 0)
        case .abs: return (.number(Swift.abs(try number(0))), 0)
        case .min: return (.number(Swift.min(try number(0), try number(1))), 0)
        case .max: return (.number(Swift.max(try number(0), try number(1))), 0)
        case .now: return (.string(now.iso8601), 0)
        case .parseDate:
            let tz = args.count > 2 ? try text(2) : "UTC"
            guard TimeZone(identifier: tz) != nil else { throw Operators.error("unknown time zone '\(tz.prefix(40))'") }
            let t = DateFunctions.parse(try text(0), format: args.count > 1 ? try text(1) : nil, timezone: tz)
            return (t.map { .string($0.iso8601) } ?? .null, 0)
        case .dateAdd:
            guard let t = DateFunctions.parse(try text(0), format: nil, timezone: "UTC") else {
                throw Operators.error("date_add() needs an ISO 8601 date, got '\(try text(0).prefix(40))'")
            }
            let d = try text(1)
            let negative = d.hasPrefix("-")
            guard let seconds = DurationParser.seconds(negative ? String(d.dropFirst()) : d) else {
                throw Operators.error("date_add(): '\(d.prefix(40))' is not a duration like 30m, 2h or 1d")
            }
            return (.string(t.adding(seconds: negative ? -seconds : seconds).iso8601), 0)
        case .formatDate:
            guard let t = DateFunctions.parse(try text(0), format: nil, timezone: "UTC") else {
                throw Operators.error("format_date() needs an ISO 8601 date, got '\(try text(0).prefix(40))'")
            }
            let tz = args.count > 2 ? try text(2) : "UTC"
            guard TimeZone(identifier: tz) != nil else { throw Operators.error("unknown time zone '\(tz.prefix(40))'") }
            return (.string(DateFunctions.format(t, pattern: try text(1), timezone: tz, locale: args.count > 3 ? try text(3) : "en_US")), 0)
        case .first: return (try list(0).first ?? .null, 0)
        case .last: return (try list(0).last ?? .null, 0)
        case .join:
            let l = try list(0)
            let s = l.map(\.text).joined(separator: args.count > 1 ? try text(1) : ", ")
            try Operators.checkSize(s)
            return (.string(s), cost(s))
        case .count: return (.number(Double(try list(0).count)), 0)
        }
    }
}

/// Locale-aware number parsing and formatting.
enum NumberFunctions {
    static func parse(_ raw: String, locale: String?) -> Double? {
        let s = raw.trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty, s.count < 64 else { return nil }
        if let locale {
            let f = NumberFormatter()
            f.locale = Locale(identifier: locale)
            f.numberStyle = .decimal
            return f.number(from: s)?.doubleValue
        }
        if let d = Double(s), d.isFinite { return d }
        // "15,5" from a keyboard that writes decimal commas.
        if !s.contains("."), s.filter({ $0 == "," }).count == 1, let d = Double(s.replacingOccurrences(of: ",", with: ".")) {
            return d
        }
        return nil
    }

    static func format(_ n: Double, decimals: Int, locale: String) -> String {
        let f = NumberFormatter()
        f.locale = Locale(identifier: locale)
        f.numberStyle = .decimal
        f.minimumFractionDigits = decimals
        f.maximumFractionDigits = decimals
        f.roundingMode = .halfUp
        return f.string(from: NSNumber(value: n)) ?? Value.formatNumber(n)
    }
}

/// Dates are ISO 8601 text in UTC; these read and write them.
enum DateFunctions {
    private static let fallbackFormats = [
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXXXX", "yyyy-MM-dd'T'HH:mm:ssXXXXX", "yyyy-MM-dd'T'HH:mmXXXXX",
        "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd",
        "dd/MM/yyyy HH:mm", "dd/MM/yyyy",
    ]

    static func parse(_ text: String, format: String?, timezone: String) -> Timestamp? {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty, s.count < 64 else { return nil }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: timezone) ?? TimeZone(identifier: "UTC")
        f.isLenient = false
        for pattern in format.map({ [$0] }) ?? fallbackFormats {
            f.dateFormat = pattern
            if let d = f.date(from: s) { return Timestamp(d) }
        }
        return nil
    }

    static func format(_ t: Timestamp, pattern: String, timezone: String, locale: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: locale)
        f.timeZone = TimeZone(identifier: timezone)
        f.dateFormat = pattern
        return f.string(from: t.date)
    }

    /// `HH:mm` means the next time the clock shows it in `timezone`; anything else is read as a date.
    static func nextInstant(_ text: String, timezone: String, after now: Timestamp) -> Timestamp? {
        let parts = text.split(separator: ":")
        if parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(m),
           parts[1].count == 2 {
            guard let tz = TimeZone(identifier: timezone) else { return nil }
            var cal = Calendar(identifier: .gregorian)
            cal.timeZone = tz
            guard let next = cal.nextDate(after: now.date, matching: DateComponents(hour: h, minute: m, second: 0),
                                          matchingPolicy: .nextTime) else { return nil }
            return Timestamp(next)
        }
        return parse(text, format: nil, timezone: timezone)
    }
}
