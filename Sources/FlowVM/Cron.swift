import Foundation

/// A five-field cron expression (`minute hour day-of-month month day-of-week`) read in a time zone: when a
/// `schedule` trigger fires. The fields take `*`, numbers, ranges (`1-5`), lists (`1,15`), steps (`*/15`, `8-18/2`,
/// `5/10` = from 5 to the end by 10), month and weekday names (`jan`, `mon-fri`) and 7 for Sunday; `@hourly`,
/// `@daily`, `@weekly`, `@monthly` and `@yearly` stand for their usual expressions. As in Vixie cron, when both the
/// day of the month and the day of the week are restricted a day matching either matches.
///
/// Occurrences are wall-clock times in the zone. One that happens twice (the hour repeated when clocks go back) fires
/// once, the first time; one that never happens (the hour skipped when clocks go forward) fires when the clock jumps
/// past it, once however many of its minutes were skipped.
public struct CronExpression: Sendable, Hashable {
    public let text: String
    public let timeZone: TimeZone
    private let minutes: [Int], hours: [Int]
    private let days: Set<Int>, months: Set<Int>, weekdays: Set<Int>
    private let daysRestricted: Bool, weekdaysRestricted: Bool

    /// Why an expression was refused, for the compiler's diagnostic.
    public struct Invalid: Error, Sendable, Hashable, CustomStringConvertible {
        public let description: String
    }

    static let macros = ["@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
                         "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let weekdayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(_ text: String, timeZone: TimeZone) throws(Invalid) {
        let expanded = Self.macros[text.trimmingCharacters(in: .whitespaces).lowercased()] ?? text
        let fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map { String($0).lowercased() }
        guard fields.count == 5 else {
            throw Invalid(description: "a cron expression has five fields (minute hour day month weekday), not \(fields.count)")
        }
        self.text = text
        self.timeZone = timeZone
        minutes = try Self.field(fields[0], "minute", 0...59, names: []).sorted()
        hours = try Self.field(fields[1], "hour", 0...23, names: []).sorted()
        days = try Self.field(fields[2], "day of the month", 1...31, names: [])
        months = try Self.field(fields[3], "month", 1...12, names: Self.monthNames, firstName: 1)
        // 7 is Sunday too.
        weekdays = Set(try Self.field(fields[4], "day of the week", 0...7, names: Self.weekdayNames).map { $0 % 7 })
        daysRestricted = !fields[2].hasPrefix("*")
        weekdaysRestricted = !fields[4].hasPrefix("*")
        // A day no month has (`0 9 31 2 *`) would never fire: say so now rather than wait forever.
        if !daysRestricted || weekdaysRestricted { return }
        let longest = months.map { [1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31][$0]! }.max() ?? 0
        guard days.contains(where: { $0 <= longest }) else {
            throw Invalid(description: "'\(text)' never happens: no month it names has that day")
        }
    }

    private static func field(_ text: String, _ what: String, _ range: ClosedRange<Int>, names: [String],
                              firstName: Int = 0) throws(Invalid) -> Set<Int> {
        func number(_ s: Substring) throws(Invalid) -> Int {
            if let n = Int(s), range.contains(n) { return n }
            if let i = names.firstIndex(of: String(s)) { return i + firstName }
            throw Invalid(description: "\(what) '\(s.prefix(20))' is not \(range.lowerBound)–\(range.upperBound)"
                + (names.isEmpty ? "" : " or a name (\(names.first!)…\(names.last!))"))
        }
        var out = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, !parts[0].isEmpty else { throw Invalid(description: "\(what) '\(item.prefix(20))' is not a cron field") }
            var step = 1
            if parts.count == 2 {
                guard let s = Int(parts[1]), s >= 1, s <= range.upperBound else {
                    throw Invalid(description: "the step in \(what) '\(item.prefix(20))' must be 1–\(range.upperBound)")
                }
                step = s
            }
            let bounds: (Int, Int)
            if parts[0] == "*" {
                bounds = (range.lowerBound, range.upperBound)
            } else if let dash = parts[0].firstIndex(of: "-") {
                let low = try number(parts[0][..<dash]), high = try number(parts[0][parts[0].index(after: dash)...])
                guard low <= high else { throw Invalid(description: "the \(what) range '\(parts[0].prefix(20))' runs backwards") }
                bounds = (low, high)
            } else {
                let n = try number(parts[0])
                bounds = (n, parts.count == 2 ? range.upperBound : n)
            }
            out.formUnion(stride(from: bounds.0, through: bounds.1, by: step))
        }
        return out
    }

    /// The first occurrence strictly after `instant` (to the minute), or nil when none comes within ten years.
    public func next(after instant: Timestamp) -> Timestamp? {
        let seconds = Self.floorDiv(instant.milliseconds, 1000)
        let wall = seconds + Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(seconds))))
        // The next wall-clock minute after the instant's.
        let startMinute = (wall - Self.mod(wall, 60)) / 60 + 1
        var day = Self.floorDiv(startMinute, 1440)
        var fromMinute = Int(startMinute - day * 1440)
        for _ in 0..<(366 * 10) {
            let (y, m, d) = Timestamp.civil(fromDays: day)
            if months.contains(Int(m)), dayMatches(year: y, month: Int(m), day: Int(d), weekday: Int(Self.mod(day + 4, 7))) {
                for h in hours where h * 60 + 59 >= fromMinute {
                    for minute in minutes where h * 60 + minute >= fromMinute {
                        let local = day * 86_400 + Int64(h * 3600 + minute * 60)
                        let t = resolve(local)
                        if t > seconds { return Timestamp(milliseconds: t * 1000) }
                    }
                }
            }
            day += 1
            fromMinute = 0
        }
        return nil
    }

    private func dayMatches(year: Int64, month: Int, day: Int, weekday: Int) -> Bool {
        let byDay = days.contains(day), byWeekday = weekdays.contains(weekday)
        switch (daysRestricted, weekdaysRestricted) {
        case (true, true): return byDay || byWeekday
        case (true, false): return byDay
        case (false, true): return byWeekday
        case (false, false): return true
        }
    }

    /// The instant (seconds since 1970) of a wall-clock time in the zone: the earlier of two when it happens twice,
    /// the moment the clock jumped past it when it never happens.
    private func resolve(_ local: Int64) -> Int64 {
        func offset(_ t: Int64) -> Int64 { Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(t)))) }
        let before = offset(local - 86_400), after = offset(local + 86_400)
        let valid = Set([before, after]).map { local - $0 }.filter { offset($0) == local - $0 }
        if let first = valid.min() { return first }
        // In a gap: the first instant whose offset is the later one.
        var low = local - max(before, after), high = local - min(before, after)
        while low < high {
            let mid = low + (high - low) / 2
            if offset(mid) == after { high = mid } else { low = mid + 1 }
        }
        return low
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { (a - mod(a, b)) / b }
    static func mod(_ a: Int64, _ b: Int64) -> Int64 { ((a % b) + b) % b }
}
