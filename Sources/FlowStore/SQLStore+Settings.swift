import FlowEngine
import FlowVM
import Foundation

/// Tenant settings, opting contacts out, and the purges retention asks for.
extension SQLStore {
    public func settings(tenant: String) async throws -> TenantSettings {
        try await driver.transaction { db in
            guard let r = try await db.execute(
                "SELECT opt_out_words, opt_out_reply, opt_out_reply_set, message_retention_days FROM tenant_settings WHERE tenant_id = $1",
                .text(tenant)).first else { return TenantSettings() }
            var s = TenantSettings()
            if let words = r.text("opt_out_words") { s.optOutWords = Self.jsonTexts(words) }
            if r.int("opt_out_reply_set") == 1 { s.optOutReply = r.text("opt_out_reply") }
            s.messageRetentionDays = r.int("message_retention_days").map(Int.init)
            return s
        }
    }

    public func saveSettings(_ s: TenantSettings, tenant: String, now: Timestamp) async throws {
        try await driver.transaction { db in
            try await db.execute(
                """
                INSERT INTO tenant_settings (tenant_id, opt_out_words, opt_out_reply, opt_out_reply_set, message_retention_days, updated_at)
                VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET opt_out_words = EXCLUDED.opt_out_words,
                  opt_out_reply = EXCLUDED.opt_out_reply, opt_out_reply_set = 1, message_retention_days = EXCLUDED.message_retention_days,
                  updated_at = EXCLUDED.updated_at
                """, .text(tenant), .text(Value.list(s.optOutWords.map(Value.string)).jsonText), s.optOutReply.map(SQLValue.text) ?? .null,
                s.messageRetentionDays.map { .int(Int64($0)) } ?? .null, .int(now.milliseconds))
        }
    }

    /// Opts a contact out for the message `seq`, inside the transaction that routes it (the contact's open
    /// conversation, if any, already locked): the contact's record notes when, the first time only; the open
    /// conversation ends (a campaign's follow-up must not reach them) and its unsent messages are not sent; the
    /// message is kept, in that conversation's history when there is one; the reply goes out the first time.
    func optOut(seq: Int64, _ inbound: Inbound, conversation: String?, reply: String?, now: Timestamp, _ db: any SQLExecutor) async throws {
        let ms = SQLValue.int(now.milliseconds)
        let newly = try await db.execute(
            """
            UPDATE contacts SET opted_out_at = $4, updated_at = $4, revision = revision + 1
            WHERE tenant_id = $1 AND channel = $2 AND address = $3 AND opted_out_at IS NULL RETURNING id
            """, .text(inbound.tenant), .text(inbound.channel), .text(inbound.contact), ms).first?.text("id")
        var programHash = ""
        if let conversation {
            let row = try await db.execute("SELECT continuation, program_hash FROM conversations WHERE id = $1", .text(conversation)).first
            programHash = row?.text("program_hash") ?? ""
            // The continuation says it ended too, as a cancel would leave it, so every reader agrees.
            var ended = row?.blob("continuation").flatMap { try? Continuation(decoding: $0) }
            ended?.status = .ended
            try await db.execute(
                """
                UPDATE conversations SET continuation = COALESCE($2, continuation), status = \(SQLStatus.ended), wait_kind = NULL, wait_key = NULL,
                  wake_at = NULL, due_at = NULL, lease_until = NULL, failure = NULL, row_version = row_version + 1, updated_at = $3 WHERE id = $1
                """, .text(conversation), ended.map { SQLValue.blob($0.encoded()) } ?? .null, ms)
            try await db.execute(
                "UPDATE outbox SET state = \(SQLStatus.dead), last_error = 'not sent: the contact opted out', completed_at = $2 WHERE conversation_id = $1 AND state = \(SQLStatus.pending) AND kind = 'send'",
                .text(conversation), ms)
            try await db.run(Hot.InsertMessage.self, .text(inbound.tenant), .text(conversation), .text(MessageRecord.Direction.inbound.rawValue),
                             .text(inbound.message.text), .text(inbound.message.value.jsonText), ms)
            try await db.execute(
                "INSERT INTO traces (tenant_id, conversation_id, event, visited, effects, wait, status, at) VALUES ($1, $2, $3, '[]', '[]', 'null', 'ended', $4)",
                .text(inbound.tenant), .text(conversation), .text(Value.map(["kind": "opt_out"]).jsonText), ms)
        }
        try await db.execute("UPDATE events SET conversation_id = $2, processed_at = $3, disposition = 'opted_out' WHERE seq = $1",
                             .int(seq), conversation.map(SQLValue.text) ?? .null, ms)
        guard let contactID = newly, let reply else { return }
        let message: Value = ["text": .string(reply)]
        // Without a conversation the reply is queued on its own (the outbox delivers a queue's rows in order).
        let queue = conversation ?? "opt-out:\(contactID)"
        try await db.run(Hot.InsertOutbox.self, .text(inbound.tenant), .text(queue), .text("\(inbound.tenant):opt-out:\(seq)"), .int(0),
                         .text("send"), .text("channel.send"),
                         .text(Value.map(["channel": .string(inbound.channel), "contact": .string(inbound.contact), "message": message,
                                          "program": .string(programHash)]).jsonText), ms)
        if let conversation {
            try await db.run(Hot.InsertMessage.self, .text(inbound.tenant), .text(conversation), .text(MessageRecord.Direction.outbound.rawValue),
                             .text(reply), .text(message.jsonText), ms)
        }
    }

    public func purgeMessages(tenant: String, endedBefore: Timestamp, limit: Int) async throws -> (conversations: Int, messages: Int) {
        try await driver.transaction { db in
            let ids = try await db.execute(
                """
                SELECT c.id FROM conversations c WHERE c.tenant_id = $1 AND c.status = \(SQLStatus.ended) AND c.updated_at < $2
                AND (EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id) OR EXISTS (SELECT 1 FROM traces t WHERE t.conversation_id = c.id))
                ORDER BY c.updated_at LIMIT $3
                """, .text(tenant), .int(endedBefore.milliseconds), .int(Int64(limit))).compactMap { $0.text("id") }
            guard !ids.isEmpty else { return (0, 0) }
            let binds = ids.map(SQLValue.text), list = Self.placeholders(ids.count)
            let purged = try await db.query("DELETE FROM messages WHERE conversation_id IN (\(list)) RETURNING id", binds).count
            try await db.query("DELETE FROM traces WHERE conversation_id IN (\(list))", binds)
            return (ids.count, purged)
        }
    }

    public func retentionPeriods() async throws -> [(tenant: String, days: Int)] {
        try await driver.transaction { db in
            try await db.execute("SELECT tenant_id, message_retention_days FROM tenant_settings WHERE message_retention_days IS NOT NULL ORDER BY tenant_id")
                .compactMap { r in
                    guard let t = r.text("tenant_id"), let d = r.int("message_retention_days") else { return nil }
                    return (t, Int(d))
                }
        }
    }

    public func purgeIdempotencyKeys(before: Timestamp) async throws -> Int {
        try await driver.transaction { db in
            try await db.execute("DELETE FROM idempotency_keys WHERE created_at < $1 RETURNING key", .int(before.milliseconds)).count
        }
    }
}
