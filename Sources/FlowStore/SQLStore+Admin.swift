import FlowEngine
import FlowVM
import Foundation
import Logging

/// The server's tables: API keys, drafts and versions, channels, audit, the inbox and the event stream.
extension SQLStore {
    // MARK: Server tables (schema 2): API keys, drafts, channels, audit

    public func insertAPIKey(_ k: APIKeyRecord) async throws {
        try await driver.transaction { db in
            try await db.execute(
                "INSERT INTO api_keys (id, tenant_id, role, prefix, hash, label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                .text(k.id), .text(k.tenant), .text(k.role), .text(k.prefix), .text(k.hash), .text(k.label), .int(k.createdAt.milliseconds))
        }
    }

    func apiKey(_ r: SQLRow) -> APIKeyRecord {
        APIKeyRecord(id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", role: r.text("role") ?? "", prefix: r.text("prefix") ?? "",
                     hash: r.text("hash") ?? "", label: r.text("label") ?? "", createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0),
                     revoked: r.int("revoked_at") != nil)
    }

    /// The live key with this prefix, if any. Read on every request, so cached for two seconds; a key revoked
    /// through this store is dropped at once, one revoked by another process within the two seconds.
    public func apiKey(prefix: String) async throws -> APIKeyRecord? {
        try await keyCache.value(prefix) {
            try await driver.transaction { db in
                try await db.execute("SELECT * FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL", .text(prefix)).first.map(self.apiKey)
            }
        }
    }

    public func apiKey(id: String, tenant: String) async throws -> APIKeyRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2", .text(id), .text(tenant)).first.map(self.apiKey)
        }
    }

    public func apiKeys(tenant: String, limit: Int = Int(Int32.max), offset: Int = 0) async throws -> (items: [APIKeyRecord], total: Int) {
        try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1", .text(tenant)).first?.int("n") ?? 0
            let items = try await db.execute("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
                                             .text(tenant), .int(Int64(limit)), .int(Int64(offset))).map(self.apiKey)
            return (items, Int(total))
        }
    }

    /// Revokes a tenant's key; false when the tenant has no such key.
    public func revokeAPIKey(id: String, tenant: String, at: Timestamp) async throws -> Bool {
        // Dropped before and after: a request racing the UPDATE could otherwise cache the key again.
        keyCache.removeAll { $0.id == id }
        defer { keyCache.removeAll { $0.id == id } }
        return try await driver.transaction { db in
            !(try await db.execute("UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING id",
                                   .text(id), .text(tenant), .int(at.milliseconds))).isEmpty
        }
    }

    public func saveDraft(tenant: String, name: String, source: String, at: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let existed = !(try await db.execute("SELECT name FROM flow_drafts WHERE tenant_id = $1 AND name = $2\(self.forUpdate)",
                                                 .text(tenant), .text(name))).isEmpty
            try await db.execute(
                """
                INSERT INTO flow_drafts (tenant_id, name, source, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (tenant_id, name) DO UPDATE SET source = EXCLUDED.source, updated_at = EXCLUDED.updated_at
                """, .text(tenant), .text(name), .text(source), .int(at.milliseconds))
            return !existed
        }
    }

    public func draft(tenant: String, name: String) async throws -> String? {
        try await driver.transaction { db in
            try await db.execute("SELECT source FROM flow_drafts WHERE tenant_id = $1 AND name = $2", .text(tenant), .text(name)).first?.text("source")
        }
    }

    public func deleteDraft(tenant: String, name: String) async throws -> DraftDeletion {
        try await driver.transaction { db in
            if !(try await db.execute("SELECT version FROM flow_versions WHERE tenant_id = $1 AND flow = $2 LIMIT 1", .text(tenant), .text(name))).isEmpty {
                return .published
            }
            let gone = try await db.execute("DELETE FROM flow_drafts WHERE tenant_id = $1 AND name = $2 RETURNING name", .text(tenant), .text(name))
            return gone.isEmpty ? .missing : .deleted
        }
    }

    /// One page of a tenant's flow names (drafted or published), in name order, and how many there are.
    public func flowNames(tenant: String, limit: Int, offset: Int) async throws -> (items: [String], total: Int) {
        let names = "SELECT name FROM flow_drafts WHERE tenant_id = $1 UNION SELECT flow AS name FROM flow_versions WHERE tenant_id = $1"
        return try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM (\(names)) AS all_names", .text(tenant)).first?.int("n") ?? 0
            let items = try await db.execute("SELECT name FROM (\(names)) AS all_names ORDER BY name LIMIT $2 OFFSET $3",
                                             .text(tenant), .int(Int64(limit)), .int(Int64(offset))).compactMap { $0.text("name") }
            return (items, Int(total))
        }
    }

    /// Every published version of a flow: number, program hash, time.
    public func versions(tenant: String, flow: String) async throws -> [(version: Int, programHash: String, source: String, at: Timestamp)] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT version, program_hash, source, published_at FROM flow_versions WHERE tenant_id = $1 AND flow = $2 ORDER BY version",
                .text(tenant), .text(flow)
            ).map { r in
                (Int(r.int("version") ?? 0), r.text("program_hash") ?? "", r.text("source") ?? "", Timestamp(milliseconds: r.int("published_at") ?? 0))
            }
        }
    }

    public func insertChannel(_ c: ChannelRecord) async throws {
        try await driver.transaction { db in
            try await db.execute(
                "INSERT INTO channels (id, tenant_id, kind, name, callback_url, created_at, secret, config) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                .text(c.id), .text(c.tenant), .text(c.kind), .text(c.name), c.callbackURL.map(SQLValue.text) ?? .null, .int(c.createdAt.milliseconds),
                c.sealedSecret.map(SQLValue.text) ?? .null, .text(c.config.jsonText))
        }
    }

    /// Writes a channel's name, settings and secrets (an edit or a rotation) over `read`, the record it was made
    /// from; false when the tenant has no such channel, or its secrets or settings changed since `read` (two edits
    /// at once: the second would have dropped what the first wrote).
    public func updateChannel(_ c: ChannelRecord, over read: ChannelRecord) async throws -> Bool {
        let changed = try await driver.transaction { db in
            try await db.execute(
                """
                UPDATE channels SET name = $3, callback_url = $4, secret = $5, config = $6, previous_secret = $7, previous_secret_until = $8
                WHERE id = $1 AND tenant_id = $2 AND COALESCE(secret, '') = $9 AND config = $10 RETURNING id
                """,
                .text(c.id), .text(c.tenant), .text(c.name), c.callbackURL.map(SQLValue.text) ?? .null, c.sealedSecret.map(SQLValue.text) ?? .null,
                .text(c.config.jsonText), c.previousSealedSecret.map(SQLValue.text) ?? .null,
                c.previousSecretUntil.map { .int($0.milliseconds) } ?? .null, .text(read.sealedSecret ?? ""), .text(read.config.jsonText)
            ).count == 1
        }
        // This process reads the new secrets at once; others within the cache's two seconds.
        channelCache.removeAll { $0.id == c.id }
        return changed
    }

    func channel(_ r: SQLRow) -> ChannelRecord {
        var c = ChannelRecord(id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", kind: r.text("kind") ?? "", name: r.text("name") ?? "",
                              callbackURL: r.text("callback_url"), createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0),
                              sealedSecret: r.text("secret"), config: r.text("config").flatMap { Value(json: $0) } ?? [:])
        c.previousSealedSecret = r.text("previous_secret")
        c.previousSecretUntil = r.int("previous_secret_until").map(Timestamp.init(milliseconds:))
        return c
    }

    /// A tenant's channel; cached for two seconds (read on every inbound message and every reply).
    public func channel(id: String, tenant: String) async throws -> ChannelRecord? {
        try await channelCache.value(ChannelKey(id: id, tenant: tenant)) {
            try await driver.transaction { db in
                try await db.execute("SELECT * FROM channels WHERE id = $1 AND tenant_id = $2", .text(id), .text(tenant)).first.map(self.channel)
            }
        }
    }

    /// A channel by id alone, for provider webhooks (`/webhooks/whatsapp/{id}`), which carry no API key: the
    /// channel names its tenant, and the request must prove itself with the channel's secret.
    public func channel(id: String) async throws -> ChannelRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT * FROM channels WHERE id = $1", .text(id)).first.map(self.channel)
        }
    }

    /// The tenant's newest channel of `kind` (`stripe`, `email`, `ai`, `n8n`): the account a connector action uses.
    /// Newest, so creating a channel rotates credentials while the old one still verifies late webhooks.
    public func newestChannel(tenant: String, kind: String) async throws -> ChannelRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT * FROM channels WHERE tenant_id = $1 AND kind = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
                                 .text(tenant), .text(kind)).first.map(self.channel)
        }
    }

    struct ChannelKey: Hashable, Sendable {
        var id, tenant: String
    }

    public func channels(tenant: String, limit: Int = Int(Int32.max), offset: Int = 0) async throws -> (items: [ChannelRecord], total: Int) {
        try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM channels WHERE tenant_id = $1", .text(tenant)).first?.int("n") ?? 0
            let items = try await db.execute("SELECT * FROM channels WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
                                             .text(tenant), .int(Int64(limit)), .int(Int64(offset))).map(self.channel)
            return (items, Int(total))
        }
    }

    public func audit(_ e: AuditEntry) async throws {
        try await driver.transaction { db in
            try await db.execute("INSERT INTO audit_log (tenant_id, actor, action, subject, request_id, at) VALUES ($1, $2, $3, $4, $5, $6)",
                                 .text(e.tenant), .text(e.actor), .text(e.action), .text(e.subject), e.request.map(SQLValue.text) ?? .null,
                                 .int(e.at.milliseconds))
        }
    }

    public func auditEntries(tenant: String, filter: AuditFilter, limit: Int, offset: Int) async throws -> (items: [AuditEntry], total: Int) {
        var conditions = ["tenant_id = $1"]
        var binds: [SQLValue] = [.text(tenant)]
        func add(_ column: String, _ op: String, _ value: SQLValue?) {
            guard let value else { return }
            binds.append(value)
            conditions.append("\(column) \(op) $\(binds.count)")
        }
        add("actor", "=", filter.actor.map(SQLValue.text))
        add("action", "=", filter.action.map(SQLValue.text))
        add("subject", "=", filter.subject.map(SQLValue.text))
        add("at", ">=", filter.after.map { .int($0.milliseconds) })
        add("at", "<", filter.before.map { .int($0.milliseconds) })
        let condition = conditions.joined(separator: " AND ")
        let values = binds
        return try await driver.transaction { db in
            let total = Int(try await db.query("SELECT COUNT(*) AS n FROM audit_log WHERE \(condition)", values).first?.int("n") ?? 0)
            let rows = try await db.query(
                "SELECT id, tenant_id, actor, action, subject, request_id, at FROM audit_log WHERE \(condition) ORDER BY id DESC LIMIT $\(values.count + 1) OFFSET $\(values.count + 2)",
                values + [.int(Int64(limit)), .int(Int64(offset))])
            return (rows.map { r in
                AuditEntry(id: r.int("id") ?? 0, tenant: r.text("tenant_id") ?? "", actor: r.text("actor") ?? "", action: r.text("action") ?? "",
                           subject: r.text("subject") ?? "", request: r.text("request_id"), at: Timestamp(milliseconds: r.int("at") ?? 0))
            }, total)
        }
    }

    public func auditLog(tenant: String) async throws -> [(actor: String, action: String, subject: String, at: Timestamp)] {
        try await auditEntries(tenant: tenant, filter: AuditFilter(), limit: Int(Int32.max), offset: 0).items.reversed().map {
            ($0.actor, $0.action, $0.subject, $0.at)
        }
    }

    /// Conversations waiting for a human, oldest first, optionally of one queue.
    public func inbox(tenant: String, queue: String?) async throws -> [InboxEntry] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at,
                  updated_at, agent FROM conversations WHERE tenant_id = $1 AND status = \(SQLStatus.handoff) ORDER BY updated_at, id
                """, .text(tenant)
            ).compactMap { r in
                let c = self.conversationRecord(r)
                guard case .handoff(let q)? = c.continuation?.wait, queue == nil || q == queue else { return nil }
                return InboxEntry(conversation: c, queue: q, agent: r.text("agent"))
            }
        }
    }

    /// Claims a handed-off conversation for an agent; false when it is not in the inbox or another agent has it.
    public func claim(conversation: String, tenant: String, agent: String) async throws -> Bool {
        try await driver.transaction { db in
            !(try await db.execute(
                """
                UPDATE conversations SET agent = $3 WHERE id = $1 AND tenant_id = $2 AND status = \(SQLStatus.handoff)
                AND (agent IS NULL OR agent = $3) RETURNING id
                """, .text(conversation), .text(tenant), .text(agent))).isEmpty
        }
    }

    /// Queues sends outside any turn (a channel's read receipts), each under its own key: one already queued is left
    /// as it is. `queue` groups them as a conversation does, since the outbox delivers one queue's rows in order.
    public func enqueue(_ sends: [QueuedAction], tenant: String, queue: @Sendable (QueuedAction) -> String, now: Timestamp) async throws {
        guard !sends.isEmpty else { return }
        try await driver.transaction { db in
            for send in sends {
                try await db.run(Hot.InsertOutbox.self, .text(tenant), .text(queue(send)), .text(send.key), .int(0), .text("send"),
                                 .text(send.action), .text(send.payload.jsonText), .int(now.milliseconds))
            }
        }
    }

    public func agentMessage(conversation: String, tenant: String, text: String, agent: String, now: Timestamp) async throws -> AgentWrite {
        try await driver.transaction { db in
            guard let row = try await db.execute(
                "SELECT channel, contact, program_hash, agent FROM conversations WHERE id = $1 AND tenant_id = $2 AND status = \(SQLStatus.handoff)\(self.forUpdate)",
                .text(conversation), .text(tenant)).first else { return .notWithAnAgent }
            if let holder = row.text("agent"), holder != agent { return .claimedByAnother(holder) }
            if row.text("agent") == nil {
                try await db.execute("UPDATE conversations SET agent = $3 WHERE id = $1 AND tenant_id = $2", .text(conversation), .text(tenant), .text(agent))
            }
            let message: Value = ["text": .string(text)]
            try await db.run(Hot.InsertMessage.self, .text(tenant), .text(conversation), .text("out"), .text(text),
                             .text(Value.map(["text": .string(text), "agent": .string(agent)]).jsonText), .int(now.milliseconds))
            try await db.run(Hot.InsertOutbox.self, .text(tenant), .text(conversation), .text("\(conversation):agent:\(UUID().uuidString.lowercased())"),
                             .int(0), .text("send"), .text("channel.send"),
                             .text(Value.map(["channel": .string(row.text("channel") ?? ""), "contact": .string(row.text("contact") ?? ""),
                                              "message": message, "program": .string(row.text("program_hash") ?? "")]).jsonText),
                             .int(now.milliseconds))
            return .queued
        }
    }

    public func transfer(conversation: String, tenant: String, to agent: String) async throws -> Bool {
        try await driver.transaction { db in
            !(try await db.execute(
                "UPDATE conversations SET agent = $3 WHERE id = $1 AND tenant_id = $2 AND status = \(SQLStatus.handoff) RETURNING id",
                .text(conversation), .text(tenant), .text(agent))).isEmpty
        }
    }

    public func queueAgents(tenant: String) async throws -> [String: [String]] {
        try await driver.transaction { db in
            var queues: [String: [String]] = [:]
            for r in try await db.execute("SELECT queue, agent_id FROM queue_agents WHERE tenant_id = $1 ORDER BY queue, agent_id", .text(tenant)) {
                queues[r.text("queue") ?? "", default: []].append(r.text("agent_id") ?? "")
            }
            return queues
        }
    }

    public func setQueueAgents(tenant: String, queue: String, agents: [String]) async throws {
        try await driver.transaction { db in
            try await db.execute("DELETE FROM queue_agents WHERE tenant_id = $1 AND queue = $2", .text(tenant), .text(queue))
            for agent in Set(agents).sorted() {
                try await db.execute("INSERT INTO queue_agents (tenant_id, queue, agent_id) VALUES ($1, $2, $3)", .text(tenant), .text(queue), .text(agent))
            }
        }
    }

    /// Changes in a tenant's conversations after two cursors: new messages (by message id) and turns (by trace id),
    /// for the live event stream. Works across processes: it reads the database, not memory.
    public func changes(tenant: String, afterMessage: Int64, afterTrace: Int64, limit: Int)
        async throws -> (messages: [(id: Int64, conversation: String, message: MessageRecord)], turns: [(id: Int64, conversation: String, status: String, wait: Value)])
    {
        try await driver.transaction { db in
            let messages = try await db.execute(
                """
                SELECT id, conversation_id, direction, text, extra, at FROM messages WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3
                """, .text(tenant), .int(afterMessage), .int(Int64(limit))
            ).map { r in
                (r.int("id") ?? 0, r.text("conversation_id") ?? "",
                 MessageRecord(direction: MessageRecord.Direction(rawValue: r.text("direction") ?? "") ?? .inbound, text: r.text("text") ?? "",
                               extra: Value(json: r.text("extra") ?? "null") ?? .null, at: Timestamp(milliseconds: r.int("at") ?? 0)))
            }
            let turns = try await db.execute(
                "SELECT id, conversation_id, status, wait FROM traces WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                .text(tenant), .int(afterTrace), .int(Int64(limit))
            ).map { r in
                (r.int("id") ?? 0, r.text("conversation_id") ?? "", r.text("status") ?? "", Value(json: r.text("wait") ?? "null") ?? .null)
            }
            return (messages, turns)
        }
    }

    /// The newest message and trace ids of a tenant: where a new event stream starts.
    public func latestCursors(tenant: String) async throws -> (message: Int64, trace: Int64) {
        try await driver.transaction { db in
            let m = try await db.execute("SELECT MAX(id) AS id FROM messages WHERE tenant_id = $1", .text(tenant)).first?.int("id") ?? 0
            let t = try await db.execute("SELECT MAX(id) AS id FROM traces WHERE tenant_id = $1", .text(tenant)).first?.int("id") ?? 0
            return (m, t)
        }
    }
}
