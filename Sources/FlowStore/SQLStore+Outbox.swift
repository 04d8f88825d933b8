import FlowEngine
import FlowVM
import Foundation
import Logging

/// The outbox: leased deliveries and their outcomes.
extension SQLStore {
    // MARK: Outbox

    public func claimDeliveries(limit: Int, now: Timestamp, lease: Int64) async throws -> [Delivery] {
        try await driver.transaction { db in
            try await db.execute(
                """
                UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (
                  SELECT o.id FROM outbox o WHERE o.state = \(SQLStatus.pending) AND o.next_attempt_at <= $1
                  AND (o.lease_until IS NULL OR o.lease_until <= $1)
                  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.conversation_id = o.conversation_id AND p.state = \(SQLStatus.pending) AND p.id < o.id)
                  ORDER BY o.id LIMIT $3\(self.skipLocked))
                RETURNING id, tenant_id, conversation_id, idempotency_key, effect_id, kind, action, payload, attempts
                """, .int(now.milliseconds), .int(now.adding(seconds: lease).milliseconds), .int(Int64(limit))
            ).map { r in
                Delivery(
                    id: r.int("id") ?? 0, tenant: r.text("tenant_id") ?? "", conversation: r.text("conversation_id") ?? "",
                    entry: OutboxEntry(kind: OutboxEntry.Kind(rawValue: r.text("kind") ?? "") ?? .perform,
                                       idempotencyKey: r.text("idempotency_key") ?? "", effectID: UInt64(r.int("effect_id") ?? 0),
                                       action: r.text("action") ?? "", payload: Value(json: r.text("payload") ?? "null") ?? .null),
                    attempt: Int(r.int("attempts") ?? 1))
            }.sorted { $0.id < $1.id }
        }
    }

    public func finishDeliveries(_ outcomes: [(Delivery, DeliveryMachine.Action)], now: Timestamp) async throws {
        guard !outcomes.isEmpty else { return }
        try await driver.transaction { db in
            for (d, action) in outcomes { try await self.finish(d, action, now: now, db) }
        }
    }

    func finish(_ d: Delivery, _ action: DeliveryMachine.Action, now: Timestamp, _ db: any SQLExecutor) async throws {
        do {
            switch action {
            case .complete(let result):
                let updated = try await db.run(Hot.CompleteDelivery.self, .int(d.id), .text(result.jsonText), .int(now.milliseconds))
                if !updated.isEmpty, d.entry.kind == .perform {
                    try await self.postResult(d, .success(result), now: now, db)
                }
            case .retry(let at, let error):
                try await db.execute(
                    "UPDATE outbox SET next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1 AND state = \(SQLStatus.pending)",
                    .int(d.id), .int(at.milliseconds), .text(error.description))
            case .deadLetter(let error):
                let updated = try await db.execute(
                    """
                    UPDATE outbox SET state = \(SQLStatus.dead), last_error = $2, completed_at = $3, lease_until = NULL
                    WHERE id = $1 AND state = \(SQLStatus.pending) RETURNING id
                    """, .int(d.id), .text(error.description), .int(now.milliseconds))
                guard !updated.isEmpty else { return }
                switch ConversationLifecycle.deadLetter(d.entry.kind, error: error) {
                case .failureToFlow(let code, let message):
                    try await self.postResult(d, .failure(code: code, message: message), now: now, db)
                case .failConversation(let reason):
                    try await db.execute(
                        """
                        UPDATE conversations SET status = \(SQLStatus.failed), failure = $3, due_at = NULL, wait_key = NULL, updated_at = $4
                        WHERE id = $1 AND tenant_id = $2 AND status IN \(SQLStatus.open)
                        """,
                        .text(d.conversation), .text(d.tenant), .text(reason), .int(now.milliseconds))
                }
            }
        }
    }

    func postResult(_ d: Delivery, _ result: EffectResult, now: Timestamp, _ db: any SQLExecutor) async throws {
        let channel = try await db.execute("SELECT channel FROM conversations WHERE id = $1", .text(d.conversation)).first?.text("channel") ?? ""
        try await insertEvent(.effectResult(id: d.entry.effectID, result: result), tenant: d.tenant, channel: channel,
                              conversation: d.conversation, providerID: "effect:\(d.entry.idempotencyKey)", now: now, db)
    }
}
