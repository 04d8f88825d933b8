import Crypto
import FlowVM
import Foundation

/// A flow's `trigger.schedule` as its published program states it (`metadata["schedule"]`): when it fires, in which
/// zone, for whom, and what a missed occurrence becomes. Read back from the `schedules` row each time it is due.
public struct ScheduleSpec: Sendable, Hashable {
    public enum Missed: String, Sendable {
        /// Occurrences missed while no process ran are run once, late (however many were missed).
        case runOnce = "run_once"
        /// They are skipped; the schedule goes on from the next occurrence.
        case skip
    }

    public var cron: [CronExpression]
    public var timezone: String
    /// A segment's name (or id), evaluated when it fires.
    public var segment: String?
    /// Or a fixed list of addresses.
    public var contacts: [String]
    /// The channel it sends on (an id); when nil, the tenant's one channel of the flow's trigger kind.
    public var channel: String?
    public var missed: Missed
    public var rate: Double?

    /// How late an occurrence may run and still count as on time: a process that was busy, or restarted, for a few
    /// minutes does not make it "missed".
    public static let grace: Int64 = 300

    public init?(_ value: Value) {
        guard case .map = value, let zone = value["timezone"].nonEmptyText.flatMap(TimeZone.init(identifier:)) else { return nil }
        var cron: [CronExpression] = []
        if case .list(let items) = value["cron"] {
            for item in items { if let c = try? CronExpression(item.text, timeZone: zone) { cron.append(c) } }
        }
        guard !cron.isEmpty else { return nil }
        self.cron = cron
        timezone = zone.identifier
        segment = value["segment"].nonEmptyText
        if case .list(let l) = value["contacts"] { contacts = l.compactMap(\.nonEmptyText) } else { contacts = [] }
        channel = value["channel"].nonEmptyText
        missed = Missed(rawValue: value["missed"].text) ?? .runOnce
        if case .number(let r) = value["rate"] { rate = r }
    }

    /// The first occurrence of any of its expressions after `instant`.
    public func next(after instant: Timestamp) -> Timestamp? {
        cron.compactMap { $0.next(after: instant) }.min()
    }

    /// What a schedule due at `due` does at `now`: the occurrence it runs (the latest one not after now, if on time
    /// or `runOnce`), how many it leaves unrun, and when it is due next. Never more than one run, however long no
    /// process ran: a week of downtime under `0 9 * * *` is one late run (or none), not seven.
    public func decide(due: Timestamp, now: Timestamp) -> (run: Timestamp?, missed: Int, next: Timestamp?) {
        var latest = due, passed = 0
        // Bounded: a minutely schedule after a long outage is counted up to here, then run or skipped all the same.
        while passed < 100_000, let n = next(after: latest), n <= now {
            latest = n
            passed += 1
        }
        let next = next(after: now)
        if now.milliseconds - latest.milliseconds <= Self.grace * 1000 { return (latest, passed, next) }
        switch missed {
        case .runOnce: return (latest, passed, next)
        case .skip: return (nil, passed + 1, next)
        }
    }

    /// The id of the campaign an occurrence makes: the same for every process that fires it, so the campaign is
    /// inserted once (`cp_` and 20 hex digits of a SHA-256 of tenant, flow and instant).
    public static func campaignID(tenant: String, flow: String, occurrence: Timestamp) -> String {
        let digest = SHA256.hash(data: Data("\(tenant)\n\(flow)\n\(occurrence.milliseconds)".utf8))
        return "cp_" + digest.prefix(10).map { String(format: "%02x", $0) }.joined()
    }
}

/// A published flow's schedule as stored (`schedules`, schema v16): the spec of the version that made it, and the
/// durable timer (`nextAt`) the engines fire. Publishing a version replaces it; one with no schedule deletes it.
public struct ScheduleRecord: Sendable, Hashable {
    public var tenant: String
    public var flow: String
    public var version: Int
    /// The program's `metadata["schedule"]`, with `trigger_channel` and `opens_with_template` beside it.
    public var spec: Value
    public var nextAt: Timestamp?
    public var lastOccurrence: Timestamp?
    public var lastCampaign: String?
    /// Why the last occurrence made no campaign (no channel to send on, no such segment, a template needed).
    public var lastError: String?
    /// Occurrences not run (skipped, or folded into one late run).
    public var missed: Int
    public var updatedAt: Timestamp

    public init(tenant: String, flow: String, version: Int, spec: Value, nextAt: Timestamp?, lastOccurrence: Timestamp? = nil,
                lastCampaign: String? = nil, lastError: String? = nil, missed: Int = 0, updatedAt: Timestamp) {
        self.tenant = tenant
        self.flow = flow
        self.version = version
        self.spec = spec
        self.nextAt = nextAt
        self.lastOccurrence = lastOccurrence
        self.lastCampaign = lastCampaign
        self.lastError = lastError
        self.missed = missed
        self.updatedAt = updatedAt
    }

    /// The row a version's program makes, or nil when it has no schedule.
    public static func of(tenant: String, version: Int, program: Program, at: Timestamp) -> ScheduleRecord? {
        guard case .map(var m) = program.metadata["schedule"], let spec = ScheduleSpec(.map(m)) else { return nil }
        m["trigger_channel"] = program.metadata["trigger"]["channel"]
        m["opens_with_template"] = .bool(program.metadata["whatsapp_template"] != .null || program.metadata["opens_with_template"] == true)
        return ScheduleRecord(tenant: tenant, flow: program.name, version: version, spec: .map(m), nextAt: spec.next(after: at), updatedAt: at)
    }
}

/// What firing a due schedule writes, in one transaction with the campaign it makes.
public struct ScheduleFiring: Sendable {
    /// The occurrence run, if any.
    public var occurrence: Timestamp?
    /// The campaign it makes (its id from `ScheduleSpec.campaignID`).
    public var campaign: CampaignRecord?
    /// A fixed list's addresses, made contacts on the campaign's channel where they are not yet.
    public var contacts: [String]
    public var missed: Int
    public var next: Timestamp?
    public var error: String?

    public init(occurrence: Timestamp?, campaign: CampaignRecord?, contacts: [String], missed: Int, next: Timestamp?, error: String?) {
        self.occurrence = occurrence
        self.campaign = campaign
        self.contacts = contacts
        self.missed = missed
        self.next = next
        self.error = error
    }
}
