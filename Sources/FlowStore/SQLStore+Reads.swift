import FlowEngine
import FlowVM
import Foundation
import Logging

/// Reads for the API and the operators: conversations, messages, statuses, traces, backlog; migration of one conversation.
extension SQLStore {
    // MARK: Reads

    public func conversation(id: String, tenant: String) async throws -> ConversationRecord? {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE id = $1 AND tenant_id = $2
                """, .text(id), .text(tenant)
            ).first.map(self.conversationRecord)
        }
    }

    public func conversations(tenant: String, status: ConversationStatus?, contact: String?) async throws -> [ConversationRecord] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE tenant_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR contact = $3)
                ORDER BY created_at, id
                """, .text(tenant), .text(status?.rawValue ?? ""), .text(contact ?? "")
            ).map(self.conversationRecord)
        }
    }

    /// One page of a tenant's conversations, oldest first, and how many match in all.
    public func conversations(tenant: String, filter: ConversationFilter, limit: Int, offset: Int) async throws
        -> (items: [ConversationRecord], total: Int)
    {
        let condition = """
            tenant_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR contact = $3) AND ($4 = '' OR flow = $4)
            AND ($5 = '' OR channel = $5)
            """
        let binds: [SQLValue] = [.text(tenant), .text(filter.status?.rawValue ?? ""), .text(filter.contact ?? ""), .text(filter.flow ?? ""),
                                 .text(filter.channel ?? "")]
        return try await driver.transaction { db in
            let total = try await db.query("SELECT COUNT(*) AS n FROM conversations WHERE \(condition)", binds).first?.int("n") ?? 0
            let items = try await db.query(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE \(condition) ORDER BY created_at, id LIMIT $6 OFFSET $7
                """, binds + [.int(Int64(limit)), .int(Int64(offset))]
            ).map(self.conversationRecord)
            return (items, Int(total))
        }
    }

    public func messages(conversation: String, tenant: String) async throws -> [MessageRecord] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT direction, text, extra, at FROM messages WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY id",
                .text(conversation), .text(tenant)
            ).map { r in
                MessageRecord(direction: MessageRecord.Direction(rawValue: r.text("direction") ?? "") ?? .inbound, text: r.text("text") ?? "",
                              extra: Value(json: r.text("extra") ?? "null") ?? .null, at: Timestamp(milliseconds: r.int("at") ?? 0))
            }
        }
    }

    /// How far a message got, in order: a later report never takes a message back (`read` after `delivered` stays
    /// `read`), and `failed` wins.
    static let statusRank = ["accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4]

    /// Notes a message the provider accepted (`providerID`, WhatsApp's `wamid`) for a conversation, with what to send
    /// instead should the provider fail it later for a reason a template gets around (`fallback`).
    public func recordSent(channel: String, providerID: String, tenant: String, conversation: String, at: Timestamp,
                           fallback: Value = .null) async throws {
        try await driver.transaction { db in
            try await db.execute(
                """
                INSERT INTO message_statuses (channel, provider_id, tenant_id, conversation_id, status, updated_at, fallback)
                VALUES ($1, $2, $3, $4, 'accepted', $5, $6)
                ON CONFLICT (channel, provider_id) DO UPDATE SET conversation_id = excluded.conversation_id, fallback = excluded.fallback
                """, .text(channel), .text(providerID), .text(tenant), .text(conversation), .int(at.milliseconds),
                fallback == .null ? .null : .text(fallback.jsonText))
        }
    }

    /// Applies a provider's status report: a message only moves forward (`read` after `delivered` stays `read`). When
    /// it moved and `followUp` asks for a send (the channel's driver decides), that send is queued in the same
    /// transaction.
    @discardableResult
    public func updateStatus(channel: String, providerID: String, tenant: String, status: String, errorCode: String?,
                             at: Timestamp, followUp: @Sendable (StatusChange) -> QueuedAction? = { _ in nil }) async throws -> StatusChange {
        guard let rank = Self.statusRank[status] else { return StatusChange(conversation: nil, changed: false) }
        return try await driver.transaction { db in
            let row = try await db.execute(
                "SELECT status, conversation_id, fallback FROM message_statuses WHERE channel = $1 AND provider_id = $2\(self.forUpdate)",
                .text(channel), .text(providerID)).first
            guard let row else {
                try await db.execute(
                    """
                    INSERT INTO message_statuses (channel, provider_id, tenant_id, status, error_code, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT (channel, provider_id) DO NOTHING
                    """, .text(channel), .text(providerID), .text(tenant), .text(status), errorCode.map(SQLValue.text) ?? .null, .int(at.milliseconds))
                return StatusChange(conversation: nil, changed: true)
            }
            let conversation = row.text("conversation_id")
            guard rank > Self.statusRank[row.text("status") ?? "", default: 0] else { return StatusChange(conversation: conversation, changed: false) }
            try await db.execute("UPDATE message_statuses SET status = $3, error_code = $4, updated_at = $5 WHERE channel = $1 AND provider_id = $2",
                                 .text(channel), .text(providerID), .text(status), errorCode.map(SQLValue.text) ?? .null, .int(at.milliseconds))
            let change = StatusChange(conversation: conversation, changed: true, fallback: row.text("fallback").flatMap { Value(json: $0) } ?? .null)
            if let conversation, let send = followUp(change) {
                try await db.run(Hot.InsertOutbox.self, .text(tenant), .text(conversation), .text(send.key), .int(0), .text("send"),
                                 .text(send.action), .text(send.payload.jsonText), .int(at.milliseconds))
            }
            return change
        }
    }

    /// The reported statuses of a conversation's messages, oldest first.
    public func statuses(conversation: String, tenant: String) async throws -> [(messageID: String, status: String, errorCode: String?, at: Timestamp)] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT provider_id, status, error_code, updated_at FROM message_statuses WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY updated_at, provider_id",
                .text(conversation), .text(tenant)
            ).map { ($0.text("provider_id") ?? "", $0.text("status") ?? "", $0.text("error_code"), Timestamp(milliseconds: $0.int("updated_at") ?? 0)) }
        }
    }

    /// When the contact last wrote in this conversation; nil when never. WhatsApp's 24-hour window runs from it.
    public func lastInboundAt(conversation: String, tenant: String) async throws -> Timestamp? {
        try await driver.transaction { db in
            // The conversation's last message from the contact, or the contact's last message on the channel in any
            // conversation (a conversation started from outside opens in the window of one they wrote in).
            let row = try await db.execute(
                """
                SELECT (SELECT MAX(at) FROM messages WHERE conversation_id = $1 AND tenant_id = $2 AND direction = 'in') AS here,
                  (SELECT k.last_seen_at FROM conversations c JOIN contacts k ON k.tenant_id = c.tenant_id AND k.channel = c.channel
                     AND k.address = c.contact WHERE c.id = $1 AND c.tenant_id = $2) AS seen
                """, .text(conversation), .text(tenant)).first
            let latest = [row?.int("here"), row?.int("seen")].compactMap { $0 }.max()
            return latest.map(Timestamp.init(milliseconds:))
        }
    }

    public func traces(conversation: String, tenant: String) async throws -> [TraceEntry] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT event, visited, effects, wait, status, at FROM traces WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY id",
                .text(conversation), .text(tenant)
            ).map { r in
                var visited: [String] = []
                if case .list(let v)? = Value(json: r.text("visited") ?? "[]") { visited = v.map(\.text) }
                return TraceEntry(event: Value(json: r.text("event") ?? "null") ?? .null, visited: visited,
                                  effects: Value(json: r.text("effects") ?? "null") ?? .null, wait: Value(json: r.text("wait") ?? "null") ?? .null,
                                  status: ConversationStatus(rawValue: r.text("status") ?? "") ?? .failed,
                                  at: Timestamp(milliseconds: r.int("at") ?? 0))
            }
        }
    }

    public func deliveries(tenant: String, state: DeliveryRecord.State?) async throws -> [DeliveryRecord] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, conversation_id, idempotency_key, action, state, attempts, last_error FROM outbox
                WHERE tenant_id = $1 AND ($2 = '' OR state = $2) ORDER BY id
                """, .text(tenant), .text(state?.rawValue ?? "")
            ).map { r in
                DeliveryRecord(id: r.int("id") ?? 0, conversation: r.text("conversation_id") ?? "", idempotencyKey: r.text("idempotency_key") ?? "",
                               action: r.text("action") ?? "", state: DeliveryRecord.State(rawValue: r.text("state") ?? "") ?? .pending,
                               attempts: Int(r.int("attempts") ?? 0), lastError: r.text("last_error"))
            }
        }
    }

    public func backlog(now: Timestamp) async throws -> (events: Int, deliveries: Int) {
        try await driver.transaction { db in
            let events = try await db.execute(
                """
                SELECT COUNT(*) AS n FROM events e WHERE e.processed_at IS NULL AND (e.disposition = 'reroute' OR EXISTS (
                  SELECT 1 FROM conversations c WHERE c.id = e.conversation_id AND c.status IN \(SQLStatus.open)))
                """).first?.int("n") ?? 0
            let due = try await db.execute("SELECT COUNT(*) AS n FROM conversations WHERE due_at IS NOT NULL AND due_at <= $1",
                                           .int(now.milliseconds)).first?.int("n") ?? 0
            let deliveries = try await db.execute("SELECT COUNT(*) AS n FROM outbox WHERE state = \(SQLStatus.pending)").first?.int("n") ?? 0
            return (Int(events + due), Int(deliveries))
        }
    }

    /// Milliseconds from storing to processing each of a tenant's events received since `since`, for benchmarks.
    public func eventLatencies(tenant: String, receivedSince since: Timestamp) async throws -> [Double] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT processed_at - received_at AS ms FROM events
                WHERE tenant_id = $1 AND received_at >= $2 AND processed_at IS NOT NULL
                """, .text(tenant), .int(since.milliseconds)
            ).compactMap { $0.int("ms").map(Double.init) }
        }
    }

    /// Conversations with a turn due now (timers, debounced bursts) and dead-lettered deliveries, for the gauges.
    public func dueAndDead(now: Timestamp) async throws -> (due: Int, dead: Int) {
        try await driver.transaction { db in
            let due = try await db.execute("SELECT COUNT(*) AS n FROM conversations WHERE due_at IS NOT NULL AND due_at <= $1",
                                           .int(now.milliseconds)).first?.int("n") ?? 0
            let dead = try await db.execute("SELECT COUNT(*) AS n FROM outbox WHERE state = \(SQLStatus.dead)").first?.int("n") ?? 0
            return (Int(due), Int(dead))
        }
    }

    public func move(conversation: ConversationRecord, to programHash: String, continuation: Continuation, now: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let wait = continuation.wait
            var moved = conversation
            moved.continuation = continuation
            let rows = try await db.execute(
                """
                UPDATE conversations SET program_hash = $4, continuation = $5, wait_kind = $6, wait_key = $7, wake_at = $8,
                  due_at = CASE WHEN due_at IS NULL THEN $8 ELSE due_at END, row_version = row_version + 1, updated_at = $9
                WHERE id = $1 AND tenant_id = $2 AND row_version = $3 RETURNING id
                """,
                .text(conversation.id), .text(conversation.tenant), .int(conversation.version), .text(programHash),
                .blob(continuation.encoded()), wait.map { SQLValue.text($0.kind) } ?? .null, moved.waitKey.map(SQLValue.text) ?? .null,
                wait?.deadline.map { SQLValue.int($0.milliseconds) } ?? .null, .int(now.milliseconds))
            if !rows.isEmpty {
                try await db.execute(
                    """
                    INSERT INTO traces (tenant_id, conversation_id, event, visited, effects, wait, status, at)
                    VALUES ($1, $2, $3, '[]', '[]', $4, $5, $6)
                    """,
                    .text(conversation.tenant), .text(conversation.id),
                    .text(Value.map(["kind": "migrated", "from": .string(conversation.programHash), "to": .string(programHash)]).jsonText),
                    .text(wait?.value.jsonText ?? "null"), .text(conversation.status.rawValue), .int(now.milliseconds))
            }
            return !rows.isEmpty
        }
    }
}
