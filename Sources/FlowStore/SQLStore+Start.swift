import FlowEngine
import FlowVM

extension SQLStore {
    public func start(_ s: ConversationStart, now: Timestamp) async throws -> StartOutcome {
        try await retryingConflicts {
            try await driver.transaction { db in
                if let key = s.idempotencyKey {
                    let seen = try await db.execute(
                        "SELECT request_digest, result FROM idempotency_keys WHERE tenant_id = $1 AND scope = 'start' AND key = $2",
                        .text(s.tenant), .text(key)).first
                    if let seen {
                        return seen.text("request_digest") == s.requestDigest ? .repeated(answer: Value(json: seen.text("result") ?? "") ?? .null) : .keyReused
                    }
                }
                // A campaign's contact: its row first (locked: another worker redoing the batch waits, then finds it
                // started), and only while it is queued and the campaign running.
                if let mark = s.campaign {
                    let row = try await db.execute(
                        """
                        SELECT t.status, c.status AS campaign_status FROM campaign_targets t JOIN campaigns c ON c.id = t.campaign_id
                        WHERE t.campaign_id = $1 AND t.contact_id = $2 AND c.tenant_id = $3\(self.postgres ? " FOR UPDATE OF t" : "")
                        """, .text(mark.campaign), .text(mark.contact), .text(s.tenant)).first
                    guard row?.text("status") == "queued", row?.text("campaign_status") == "running" else { return .notQueued }
                }
                // The conversations first, then the contact (locked, so an opt-out committing meanwhile is seen): the
                // order every writer takes them in.
                let open = try await db.execute(
                    "SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3 AND status IN \(SQLStatus.open)\(self.forUpdate)",
                    .text(s.tenant), .text(s.channel), .text(s.contact))
                let contact = try await db.execute(
                    "SELECT opted_out_at FROM contacts WHERE tenant_id = $1 AND channel = $2 AND address = $3\(self.forUpdate)",
                    .text(s.tenant), .text(s.channel), .text(s.contact)).first
                if contact?.int("opted_out_at") != nil { return .optedOut }
                // A conversation for later does not need the contact's slot now: whether it is free is decided then.
                let at = s.at.flatMap { $0 > now ? $0 : nil }
                if at == nil, let id = open.first?.text("id") { return .busy(conversation: id) }
                let ms = SQLValue.int(now.milliseconds), startsAt = SQLValue.int((at ?? now).milliseconds)
                if contact == nil {
                    try await db.execute(
                        """
                        INSERT INTO contacts (id, tenant_id, channel, address, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $6, $5, $5)
                        ON CONFLICT (tenant_id, channel, address) DO NOTHING
                        """, .text(s.newContactID), .text(s.tenant), .text(s.channel), .text(s.contact), ms, s.contactName.map(SQLValue.text) ?? .null)
                }
                try await db.execute(
                    """
                    INSERT INTO conversations (id, tenant_id, channel, channel_kind, contact, flow, program_hash, status, due_at,
                      created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
                    """,
                    .text(s.newConversationID), .text(s.tenant), .text(s.channel), .text(s.channelKind), .text(s.contact),
                    .text(s.flow.name), .text(s.flow.programHash), .text((at == nil ? ConversationStatus.active : .scheduled).rawValue),
                    startsAt, ms)
                try await db.execute(
                    """
                    INSERT INTO events (tenant_id, channel, channel_kind, contact, conversation_id, kind, body, received_at)
                    VALUES ($1, $2, $3, $4, $5, 'start', $6, $7)
                    """,
                    .text(s.tenant), .text(s.channel), .text(s.channelKind), .text(s.contact), .text(s.newConversationID),
                    .text(EventBody.start(variables: s.variables).value.jsonText), startsAt)
                if let key = s.idempotencyKey {
                    try await db.execute(
                        "INSERT INTO idempotency_keys (tenant_id, scope, key, request_digest, result, created_at) VALUES ($1, 'start', $2, $3, $4, $5)",
                        .text(s.tenant), .text(key), .text(s.requestDigest), .text(s.answer.jsonText), ms)
                }
                if let mark = s.campaign {
                    try await db.execute(
                        "UPDATE campaign_targets SET status = 'started', conversation_id = $3, started_at = $4 WHERE campaign_id = $1 AND contact_id = $2",
                        .text(mark.campaign), .text(mark.contact), .text(s.newConversationID), ms)
                }
                return .started(conversation: s.newConversationID)
            }
        }
    }
}
