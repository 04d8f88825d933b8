import FlowVM
import Foundation
import Testing

/// `CronExpression`: the fields, the Vixie day rule, and wall-clock times across daylight-saving changes.
@Suite struct CronTests {
    static func at(_ iso: String) -> Timestamp {
        let f = ISO8601DateFormatter()
        return Timestamp(f.date(from: iso)!)
    }

    static func zone(_ name: String) -> TimeZone { TimeZone(identifier: name)! }

    /// The first `count` occurrences after `from`, as UTC ISO texts.
    static func occurrences(_ text: String, _ zone: String = "UTC", after from: String, count: Int = 1) throws -> [String] {
        let cron = try CronExpression(text, timeZone: Self.zone(zone))
        var t = at(from), out: [String] = []
        for _ in 0..<count {
            guard let n = cron.next(after: t) else { break }
            out.append(n.iso8601.replacingOccurrences(of: ".000", with: ""))
            t = n
        }
        return out
    }

    @Test func weekdaysAtNineInSaoPaulo() throws {
        // Friday 2026-12-04 at 09:30 in São Paulo (UTC−3): the next is Monday at 09:00, then Tuesday.
        #expect(try Self.occurrences("0 9 * * 1-5", "America/Sao_Paulo", after: "2026-12-04T12:30:00Z", count: 2)
            == ["2026-12-07T12:00:00Z", "2026-12-08T12:00:00Z"])
        // Exactly at an occurrence, the next one is the one after it.
        #expect(try Self.occurrences("0 9 * * 1-5", "America/Sao_Paulo", after: "2026-12-07T12:00:00Z") == ["2026-12-08T12:00:00Z"])
        #expect(try Self.occurrences("0 9 * * mon-fri", "America/Sao_Paulo", after: "2026-12-04T12:30:00Z") == ["2026-12-07T12:00:00Z"])
    }

    @Test func stepsListsRangesAndNames() throws {
        #expect(try Self.occurrences("*/15 * * * *", after: "2026-12-03T10:07:00Z", count: 3)
            == ["2026-12-03T10:15:00Z", "2026-12-03T10:30:00Z", "2026-12-03T10:45:00Z"])
        // a/n: from a to the end of the field by n.
        #expect(try Self.occurrences("5/20 * * * *", after: "2026-12-03T10:00:00Z", count: 4)
            == ["2026-12-03T10:05:00Z", "2026-12-03T10:25:00Z", "2026-12-03T10:45:00Z", "2026-12-03T11:05:00Z"])
        #expect(try Self.occurrences("0 8-18/5 * * *", after: "2026-12-03T09:00:00Z", count: 3)
            == ["2026-12-03T13:00:00Z", "2026-12-03T18:00:00Z", "2026-12-04T08:00:00Z"])
        #expect(try Self.occurrences("30 7 1,15 jan,JUL *", after: "2026-12-03T00:00:00Z", count: 3)
            == ["2027-01-01T07:30:00Z", "2027-01-15T07:30:00Z", "2027-07-01T07:30:00Z"])
        // 7 is Sunday, like 0; Thursday 2026-12-03 → Sunday the 6th.
        #expect(try Self.occurrences("0 0 * * 7", after: "2026-12-03T00:00:00Z") == ["2026-12-06T00:00:00Z"])
        #expect(try Self.occurrences("0 0 * * sun", after: "2026-12-03T00:00:00Z") == ["2026-12-06T00:00:00Z"])
        #expect(try Self.occurrences("@daily", after: "2026-12-03T00:00:00Z") == ["2026-12-04T00:00:00Z"])
        #expect(try Self.occurrences("@monthly", after: "2026-12-03T00:00:00Z") == ["2027-01-01T00:00:00Z"])
        // A leap day waits for its year.
        #expect(try Self.occurrences("0 0 29 2 *", after: "2026-03-01T00:00:00Z") == ["2028-02-29T00:00:00Z"])
    }

    /// Both day fields restricted: a day matching either fires (the 13th, or a Friday).
    @Test func dayOfMonthOrDayOfWeek() throws {
        #expect(try Self.occurrences("0 0 13 * 5", after: "2026-12-03T00:00:00Z", count: 3)
            == ["2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z"])
    }

    /// New York springs forward at 02:00 on 2026-03-08 (EST → EDT): 02:30 never happens, so it fires at the jump
    /// (03:00 EDT), once, however many skipped minutes the expression names.
    @Test func theSkippedHourFiresOnceAtTheJump() throws {
        #expect(try Self.occurrences("30 2 * * *", "America/New_York", after: "2026-03-07T12:00:00Z", count: 2)
            == ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"])
        #expect(try Self.occurrences("*/15 * * * *", "America/New_York", after: "2026-03-08T06:50:00Z", count: 2)
            == ["2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"])
        // Before the change it ran at 07:00 UTC (EST), after it at 13:00 UTC (EDT) for 09:00.
        #expect(try Self.occurrences("0 9 * * *", "America/New_York", after: "2026-03-07T00:00:00Z", count: 2)
            == ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z"])
    }

    /// New York falls back at 02:00 on 2026-11-01 (EDT → EST): 01:30 happens twice and fires the first time only.
    @Test func theRepeatedHourFiresOnce() throws {
        #expect(try Self.occurrences("30 1 * * *", "America/New_York", after: "2026-11-01T04:00:00Z", count: 2)
            == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
        // Asked during the second 01:10 (EST), the day's 01:30 has been: tomorrow's is next.
        #expect(try Self.occurrences("30 1 * * *", "America/New_York", after: "2026-11-01T06:10:00Z") == ["2026-11-02T06:30:00Z"])
    }

    @Test func refusedExpressionsSayWhy() {
        for (text, words) in [
            ("* * *", "five fields"), ("61 * * * *", "minute '61'"), ("0 25 * * *", "hour '25'"), ("0 9 * * 8", "day of the week"),
            ("5-1 * * * *", "backwards"), ("*/0 * * * *", "step"), ("0 9 31 2 *", "never happens"), ("0 9 * foo *", "month 'foo'"),
            ("0 9 1,,2 * *", "not a cron field"),
        ] {
            do {
                _ = try CronExpression(text, timeZone: Self.zone("UTC"))
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.description.contains(words), "\(text): \(error.description)")
            }
        }
        // The 31st of February is fine when a Monday may fire it instead.
        #expect(throws: Never.self) { try CronExpression("0 9 31 2 mon", timeZone: Self.zone("UTC")) }
    }
}
