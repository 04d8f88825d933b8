/// A statement the engine runs on every turn or delivery. On PostgreSQL it is prepared once per connection and
/// then only bound and executed; SQLite runs the same text. Written with `$n` placeholders and no dialect-specific
/// syntax, so one text serves both databases.
protocol HotStatement {
    static var sql: String { get }
}

/// The hot path's statements, one type each (a prepared statement's name is its type's name).
enum Hot {
    enum AttachEvent: HotStatement {
        static let sql = "UPDATE events SET conversation_id = $2, disposition = NULL WHERE seq = $1"
    }
    enum MarkDue: HotStatement {
        static let sql = "UPDATE conversations SET due_at = CASE WHEN due_at IS NULL OR due_at > $2 THEN $2 ELSE due_at END WHERE id = $1"
    }
    enum UpdateConversation: HotStatement {
        static let sql = """
            UPDATE conversations SET continuation = $2, status = $3, wait_kind = $4, wait_key = $5, wake_at = $6, due_at = $7,
              step = $8, row_version = row_version + 1, failure = $9, updated_at = $10, lease_until = NULL WHERE id = $1
            """
    }
    enum InsertOutbox: HotStatement {
        static let sql = """
            INSERT INTO outbox (tenant_id, conversation_id, idempotency_key, effect_id, kind, action, payload, state,
              next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \(SQLStatus.pending), $8, $8)
            ON CONFLICT (idempotency_key) DO NOTHING
            """
    }
    enum InsertMessage: HotStatement {
        static let sql = "INSERT INTO messages (tenant_id, conversation_id, direction, text, extra, at) VALUES ($1, $2, $3, $4, $5, $6)"
    }
    enum CompleteDelivery: HotStatement {
        static let sql = """
            UPDATE outbox SET state = \(SQLStatus.done), result = $2, completed_at = $3, lease_until = NULL
            WHERE id = $1 AND state = \(SQLStatus.pending) RETURNING id
            """
    }
}
