import FlowEngine
import FlowVM

/// Campaigns (schema v14): the row paces itself with a token bucket and is leased to one worker at a time; each
/// contact's row is marked started in the same transaction as the conversation it starts (`start`), so a campaign
/// reaches a contact at most once however often a batch is redone.
extension SQLStore: CampaignRecords {
    static let campaignColumns = """
        id, tenant_id, name, flow, channel, channel_kind, segment_id, filter, variables, starts_at, rate_milli, daily_limit, if_busy, status,
        failure, created_at, updated_at, finished_at, tokens_milli, refilled_at, next_at
        """

    func campaignRow(_ r: SQLRow) -> CampaignRecord {
        var c = CampaignRecord(
            id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", name: r.text("name") ?? "", flow: r.text("flow") ?? "",
            channel: r.text("channel") ?? "", channelKind: r.text("channel_kind") ?? "", segment: r.text("segment_id"), filter: Value(json: r.text("filter") ?? "{}") ?? .map([:]),
            variables: Self.jsonMap(r.text("variables")), startsAt: Timestamp(milliseconds: r.int("starts_at") ?? 0),
            rate: Double(r.int("rate_milli") ?? 1000) / 1000, dailyLimit: r.int("daily_limit").map(Int.init),
            ifBusy: CampaignRecord.IfBusy(rawValue: r.text("if_busy") ?? "") ?? .skip,
            status: CampaignRecord.Status(rawValue: r.text("status") ?? "") ?? .failed, createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0))
        c.failure = r.text("failure")
        c.updatedAt = Timestamp(milliseconds: r.int("updated_at") ?? 0)
        c.finishedAt = r.int("finished_at").map(Timestamp.init(milliseconds:))
        return c
    }

    public func insertCampaign(_ c: CampaignRecord) async throws {
        try await driver.transaction { db in _ = try await self.insertCampaign(c, db) }
    }

    /// Inserts a campaign unless one has its id (a schedule's occurrence fired twice); true when it did.
    func insertCampaign(_ c: CampaignRecord, _ db: any SQLExecutor) async throws -> Bool {
        try await !db.execute(
            """
            INSERT INTO campaigns (id, tenant_id, name, flow, channel, segment_id, filter, variables, starts_at, rate_milli, daily_limit,
              if_busy, status, next_at, created_at, updated_at, channel_kind)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $9, $14, $14, $15) ON CONFLICT (id) DO NOTHING RETURNING id
            """, .text(c.id), .text(c.tenant), .text(c.name), .text(c.flow), .text(c.channel), c.segment.map(SQLValue.text) ?? .null,
            .text(c.filter.jsonText), .text(Value.map(c.variables).jsonText), .int(c.startsAt.milliseconds),
            .int(Int64((c.rate * 1000).rounded())), c.dailyLimit.map { .int(Int64($0)) } ?? .null, .text(c.ifBusy.rawValue),
            .text(c.status.rawValue), .int(c.createdAt.milliseconds), .text(c.channelKind)).isEmpty
    }

    public func campaigns(tenant: String, limit: Int, offset: Int) async throws -> (items: [CampaignRecord], total: Int) {
        try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM campaigns WHERE tenant_id = $1", .text(tenant)).first?.int("n") ?? 0
            let rows = try await db.execute(
                "SELECT \(Self.campaignColumns) FROM campaigns WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                .text(tenant), .int(Int64(limit)), .int(Int64(offset)))
            return (rows.map(self.campaignRow), Int(total))
        }
    }

    public func campaign(id: String, tenant: String) async throws -> CampaignRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT \(Self.campaignColumns) FROM campaigns WHERE id = $1 AND tenant_id = $2", .text(id), .text(tenant))
                .first.map(self.campaignRow)
        }
    }

    public func setCampaignStatus(id: String, tenant: String, from: Set<CampaignRecord.Status>, to status: CampaignRecord.Status,
                                  now: Timestamp) async throws -> (campaign: CampaignRecord, moved: Bool)? {
        try await driver.transaction { db in
            guard let row = try await db.execute(
                "SELECT \(Self.campaignColumns) FROM campaigns WHERE id = $1 AND tenant_id = $2\(self.forUpdate)", .text(id), .text(tenant)).first
            else { return nil }
            let current = self.campaignRow(row)
            guard from.contains(current.status) else { return (current, false) }
            let ms = now.milliseconds
            // Resuming one that never began leaves it scheduled (its contacts are chosen when it begins); one that had
            // is due now, and its bucket refills from now, not from when it was paused.
            let began = row.int("refilled_at") != nil
            let status = status == .running && !began ? .scheduled : status
            let ends = status == .cancelled || status == .finished
            let next = status == .running ? ms : (row.int("next_at") ?? current.startsAt.milliseconds)
            try await db.execute(
                """
                UPDATE campaigns SET status = $3, updated_at = $4, finished_at = $5, next_at = $6, refilled_at = $7
                WHERE id = $1 AND tenant_id = $2
                """, .text(id), .text(tenant), .text(status.rawValue), .int(ms), ends ? .int(ms) : .null, .int(next),
                began ? .int(status == .running ? ms : row.int("refilled_at")!) : .null)
            if status == .cancelled {
                try await db.execute(
                    "UPDATE campaign_targets SET status = 'skipped', reason = 'cancelled' WHERE campaign_id = $1 AND status = 'queued'", .text(id))
            }
            var moved = current
            moved.status = status
            moved.updatedAt = now
            if ends { moved.finishedAt = now }
            return (moved, true)
        }
    }

    public func campaignCounts(id: String, tenant: String) async throws -> CampaignCounts {
        try await driver.transaction { db in
            var counts = CampaignCounts()
            for r in try await db.execute(
                "SELECT status, reason, COUNT(*) AS n FROM campaign_targets WHERE campaign_id = $1 AND tenant_id = $2 GROUP BY status, reason",
                .text(id), .text(tenant)) {
                let n = Int(r.int("n") ?? 0)
                counts.total += n
                switch r.text("status") {
                case "queued": counts.queued += n
                case "started": counts.started += n
                default: counts.skipped[r.text("reason") ?? "skipped", default: 0] += n
                }
            }
            let started = "SELECT conversation_id FROM campaign_targets WHERE campaign_id = $1 AND tenant_id = $2 AND status = 'started'"
            let row = try await db.execute(
                """
                SELECT
                  (SELECT COUNT(DISTINCT conversation_id) FROM messages WHERE direction = 'out' AND conversation_id IN (\(started))) AS sent,
                  (SELECT COUNT(DISTINCT conversation_id) FROM message_statuses WHERE status IN ('delivered', 'read')
                     AND conversation_id IN (\(started))) AS delivered,
                  (SELECT COUNT(DISTINCT conversation_id) FROM message_statuses WHERE status = 'read' AND conversation_id IN (\(started))) AS seen,
                  (SELECT COUNT(DISTINCT conversation_id) FROM messages WHERE direction = 'in' AND conversation_id IN (\(started))) AS replied
                """, .text(id), .text(tenant)).first
            counts.sent = Int(row?.int("sent") ?? 0)
            counts.delivered = Int(row?.int("delivered") ?? 0)
            counts.read = Int(row?.int("seen") ?? 0)
            counts.replied = Int(row?.int("replied") ?? 0)
            for r in try await db.execute(
                """
                SELECT COALESCE(error_code, 'unknown') AS code, COUNT(DISTINCT conversation_id) AS n FROM message_statuses
                WHERE status = 'failed' AND conversation_id IN (\(started)) GROUP BY COALESCE(error_code, 'unknown')
                """, .text(id), .text(tenant)) {
                counts.failed[r.text("code") ?? "unknown", default: 0] += Int(r.int("n") ?? 0)
            }
            let flowFailed = try await db.execute(
                "SELECT COUNT(*) AS n FROM conversations WHERE status = 'failed' AND id IN (\(started))", .text(id), .text(tenant)).first?.int("n") ?? 0
            if flowFailed > 0 { counts.failed["flow_failed"] = Int(flowFailed) }
            return counts
        }
    }

    // MARK: The runner's side

    public func claimCampaign(now: Timestamp, lease: Int64, maxBatch: Int) async throws -> CampaignBatch? {
        try await retryingConflicts {
            try await driver.transaction { db in
                let ms = now.milliseconds
                guard let row = try await db.execute(
                    """
                    SELECT \(Self.campaignColumns) FROM campaigns WHERE status IN ('scheduled', 'running') AND next_at <= $1
                      AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_at LIMIT 1\(self.skipLocked)
                    """, .int(ms)).first
                else { return nil }
                var campaign = self.campaignRow(row)
                let id = SQLValue.text(campaign.id)
                if campaign.status == .scheduled {
                    // Its contacts are the filter's as of now; those who opted out are counted, not queued.
                    var filter = ContactFilter(value: campaign.filter)
                    filter.channel = campaign.channel
                    let (condition, binds) = Self.contactConditions(tenant: campaign.tenant, filter)
                    let n = binds.count
                    if self.postgres && filter.addresses.isEmpty {
                        // Contacts imported minutes ago have no statistics yet (autovacuum has not analyzed them), and
                        // PostgreSQL then plans this over 100,000 contacts as a nested loop that ran for minutes. A
                        // sample of each table first (~30 ms here), as a campaign begins rarely; a fixed list of addresses
                        // is looked up by its key whatever the statistics say.
                        try await db.execute("ANALYZE contacts, contact_tags, contact_attributes")
                    }
                    try await db.query(
                        """
                        INSERT INTO campaign_targets (campaign_id, tenant_id, channel, contact_id, address, status, reason, next_at)
                        SELECT $\(n + 1), c.tenant_id, c.channel, c.id, c.address,
                          CASE WHEN c.opted_out_at IS NULL THEN 'queued' ELSE 'skipped' END,
                          CASE WHEN c.opted_out_at IS NULL THEN NULL ELSE 'opted_out' END, 0
                        FROM contacts c WHERE \(condition)
                        """, binds + [id])
                    let total = try await db.execute("SELECT COUNT(*) AS n FROM campaign_targets WHERE campaign_id = $1", id).first?.int("n") ?? 0
                    try await db.execute(
                        "UPDATE campaigns SET status = 'running', total = $2, tokens_milli = 1000, refilled_at = $3, updated_at = $3 WHERE id = $1",
                        id, .int(total), .int(ms))
                    campaign.status = .running
                }
                // The bucket: refilled at the rate since it was last, holding at most a second's worth (and at least one).
                let rate = Int64((campaign.rate * 1000).rounded())
                let capacity = max(1000, rate)
                let last = row.int("refilled_at") ?? ms
                let before = campaign.status == .running && row.int("refilled_at") != nil ? (row.int("tokens_milli") ?? 0) : 1000
                let tokens = min(capacity, before + rate * max(0, ms - last) / 1000)
                var allowed = min(Int(tokens / 1000), maxBatch)
                if let limit = campaign.dailyLimit {
                    let used = try await db.execute(
                        "SELECT COUNT(*) AS n FROM campaign_targets WHERE tenant_id = $1 AND channel = $2 AND status = 'started' AND started_at > $3",
                        .text(campaign.tenant), .text(campaign.channel), .int(ms - 86_400_000)).first?.int("n") ?? 0
                    allowed = min(allowed, max(0, limit - Int(used)))
                }
                let targets = allowed == 0 ? [] : try await db.execute(
                    """
                    SELECT contact_id, address FROM campaign_targets WHERE campaign_id = $1 AND status = 'queued' AND next_at <= $2
                    ORDER BY next_at, contact_id LIMIT $3
                    """, id, .int(ms), .int(Int64(allowed))).map { CampaignTarget(contact: $0.text("contact_id") ?? "", address: $0.text("address") ?? "") }
                try await db.execute("UPDATE campaigns SET tokens_milli = $2, refilled_at = $3, lease_until = $4 WHERE id = $1",
                                     id, .int(tokens), .int(ms), .int(ms + lease * 1000))
                return CampaignBatch(campaign: campaign, targets: targets)
            }
        }
    }

    public func finishCampaignBatch(_ batch: CampaignBatch, outcomes: [CampaignTargetOutcome], started: Int, failure: String?,
                                    now: Timestamp) async throws {
        try await retryingConflicts {
            try await driver.transaction { db in
                let id = SQLValue.text(batch.campaign.id), ms = now.milliseconds
                for (target, outcome) in zip(batch.targets, outcomes) {
                    switch outcome {
                    case .done: continue
                    case .skipped(let reason):
                        try await db.execute("UPDATE campaign_targets SET status = 'skipped', reason = $3 WHERE campaign_id = $1 AND contact_id = $2 AND status = 'queued'",
                                             id, .text(target.contact), .text(reason))
                    case .later(let at):
                        try await db.execute("UPDATE campaign_targets SET next_at = $3 WHERE campaign_id = $1 AND contact_id = $2 AND status = 'queued'",
                                             id, .text(target.contact), .int(at.milliseconds))
                    }
                }
                guard let row = try await db.execute(
                    "SELECT status, rate_milli, tokens_milli, daily_limit, tenant_id, channel FROM campaigns WHERE id = $1\(self.forUpdate)", id).first
                else { return }
                let tokens = max(0, (row.int("tokens_milli") ?? 0) - Int64(started) * 1000)
                let rate = max(1, row.int("rate_milli") ?? 1000)
                // Still running (not paused or cancelled meanwhile): when is it due next?
                var status = row.text("status") ?? ""
                var next: Int64? = nil
                if status == "running" {
                    if let failure {
                        status = "failed"
                        try await db.execute("UPDATE campaigns SET failure = $2 WHERE id = $1", id, .text(failure))
                    } else if let due = try await db.execute(
                        "SELECT MIN(next_at) AS at FROM campaign_targets WHERE campaign_id = $1 AND status = 'queued'", id).first?.int("at") {
                        // A token's worth of time from now, or when the first deferred contact comes due.
                        next = max(due, ms + max(0, 1000 - tokens) * 1000 / rate)
                        if let limit = row.int("daily_limit") {
                            let window = try await db.execute(
                                """
                                SELECT COUNT(*) AS n, MIN(started_at) AS first FROM campaign_targets WHERE tenant_id = $1 AND channel = $2
                                  AND status = 'started' AND started_at > $3
                                """, .text(row.text("tenant_id") ?? ""), .text(row.text("channel") ?? ""), .int(ms - 86_400_000)).first
                            if let n = window?.int("n"), n >= limit, let first = window?.int("first") { next = max(next!, first + 86_400_000 + 1) }
                        }
                    } else {
                        status = "finished"
                    }
                }
                let ended = status == "finished" || status == "failed"
                try await db.execute(
                    """
                    UPDATE campaigns SET status = $2, tokens_milli = $3, next_at = COALESCE($4, next_at), lease_until = NULL, updated_at = $5,
                      finished_at = CASE WHEN $6 = 1 THEN $5 ELSE finished_at END WHERE id = $1
                    """, id, .text(status), .int(tokens), next.map(SQLValue.int) ?? .null, .int(ms), .int(ended ? 1 : 0))
            }
        }
    }
}
