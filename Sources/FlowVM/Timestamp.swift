import Foundation

/// An instant in whole milliseconds since 1970 UTC: exact to encode, so continuations round-trip bit for bit.
public struct Timestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public init(_ date: Date) { milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }

    public var date: Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    /// This instant plus `seconds`.
    public func adding(seconds: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + seconds * 1000) }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.milliseconds < b.milliseconds }

    /// ISO 8601 in UTC with milliseconds when they are not zero, e.g. `2026-11-23T09:00:00Z`.
    public var iso8601: String {
        let seconds = milliseconds.floorDiv(1000)
        let ms = milliseconds - seconds * 1000
        let days = seconds.floorDiv(86_400)
        let secOfDay = seconds - days * 86_400
        let (y, m, d) = Timestamp.civil(fromDays: days)
        var s = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, secOfDay / 3600, secOfDay / 60 % 60, secOfDay % 60)
        if ms != 0 { s += String(format: ".%03d", ms) }
        return s + "Z"
    }

    public var description: String { iso8601 }

    /// Howard Hinnant's days-from-civil inverse; avoids Foundation calendars for a hot, pure path.
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

extension Int64 {
    func floorDiv(_ d: Int64) -> Int64 {
        let q = self / d
        return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
    }
}
