import FlowEngine
import FlowVM

/// Schedules (schema v16): a row per published flow with a `trigger.schedule`, holding its next occurrence as a
/// durable timer. Any number of processes may poll it: a lease keeps them from working on one row at once, and the
/// firing is written only if the row is still due at the instant it was claimed at (compare-and-set on `next_at`),
/// with the campaign it makes, under an id derived from the occurrence: an occurrence is fired once.
extension SQLStore {
    static let scheduleColumns = "tenant_id, flow, version, spec, next_at, last_occurrence, last_campaign, last_error, missed, updated_at"

    func scheduleRow(_ r: SQLRow) -> ScheduleRecord {
        ScheduleRecord(tenant: r.text("tenant_id") ?? "", flow: r.text("flow") ?? "", version: Int(r.int("version") ?? 0),
                       spec: Value(json: r.text("spec") ?? "{}") ?? .map([:]), nextAt: r.int("next_at").map(Timestamp.init(milliseconds:)),
                       lastOccurrence: r.int("last_occurrence").map(Timestamp.init(milliseconds:)), lastCampaign: r.text("last_campaign"),
                       lastError: r.text("last_error"), missed: Int(r.int("missed") ?? 0),
                       updatedAt: Timestamp(milliseconds: r.int("updated_at") ?? 0))
    }

    /// In a publish's transaction: the version's schedule replaces the flow's (due from its first occurrence after
    /// `at`), or the flow has none any more.
    func replaceSchedule(tenant: String, version: Int, program: Program, at: Timestamp, _ db: any SQLExecutor) async throws {
        guard let s = ScheduleRecord.of(tenant: tenant, version: version, program: program, at: at) else {
            try await db.execute("DELETE FROM schedules WHERE tenant_id = $1 AND flow = $2", .text(tenant), .text(program.name))
            return
        }
        try await db.execute(
            """
            INSERT INTO schedules (tenant_id, flow, version, spec, next_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (tenant_id, flow) DO UPDATE SET version = EXCLUDED.version, spec = EXCLUDED.spec, next_at = EXCLUDED.next_at,
              lease_until = NULL, last_error = NULL, updated_at = EXCLUDED.updated_at
            """, .text(tenant), .text(s.flow), .int(Int64(version)), .text(s.spec.jsonText),
            s.nextAt.map { .int($0.milliseconds) } ?? .null, .int(at.milliseconds))
    }

    public func claimSchedules(now: Timestamp, lease: Int64, limit: Int) async throws -> [ScheduleRecord] {
        try await retryingConflicts {
            try await driver.transaction { db in
                let ms = SQLValue.int(now.milliseconds)
                let rows = try await db.execute(
                    """
                    SELECT \(Self.scheduleColumns) FROM schedules WHERE next_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                    ORDER BY next_at LIMIT $2\(self.skipLocked)
                    """, ms, .int(Int64(limit))).map(self.scheduleRow)
                for s in rows {
                    try await db.execute("UPDATE schedules SET lease_until = $3 WHERE tenant_id = $1 AND flow = $2",
                                         .text(s.tenant), .text(s.flow), .int(now.milliseconds + lease * 1000))
                }
                return rows
            }
        }
    }

    public func finishSchedule(_ claimed: ScheduleRecord, _ firing: ScheduleFiring, now: Timestamp) async throws -> Bool {
        guard let due = claimed.nextAt else { return false }
        return try await retryingConflicts {
            try await driver.transaction { db in
                let moved = try await db.execute(
                    """
                    UPDATE schedules SET next_at = $5, lease_until = NULL, last_occurrence = COALESCE($6, last_occurrence),
                      last_campaign = COALESCE($7, last_campaign), last_error = $8, missed = missed + $9, updated_at = $10
                    WHERE tenant_id = $1 AND flow = $2 AND version = $3 AND next_at = $4 RETURNING flow
                    """, .text(claimed.tenant), .text(claimed.flow), .int(Int64(claimed.version)), .int(due.milliseconds),
                    firing.next.map { .int($0.milliseconds) } ?? .null, firing.occurrence.map { .int($0.milliseconds) } ?? .null,
                    firing.campaign.map { .text($0.id) } ?? .null, firing.error.map(SQLValue.text) ?? .null,
                    .int(Int64(firing.missed)), .int(now.milliseconds))
                guard !moved.isEmpty else { return false }
                guard let campaign = firing.campaign else { return true }
                // A fixed list's contacts become contacts on the channel (as a start from the API makes them).
                for address in firing.contacts {
                    try await db.execute(
                        """
                        INSERT INTO contacts (id, tenant_id, channel, address, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                        ON CONFLICT (tenant_id, channel, address) DO NOTHING
                        """, .text(ContactRecord.newID()), .text(campaign.tenant), .text(campaign.channel), .text(address), .int(now.milliseconds))
                }
                _ = try await self.insertCampaign(campaign, db)
                return true
            }
        }
    }

    public func schedule(tenant: String, flow: String) async throws -> ScheduleRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT \(Self.scheduleColumns) FROM schedules WHERE tenant_id = $1 AND flow = $2", .text(tenant), .text(flow))
                .first.map(self.scheduleRow)
        }
    }
}
