import FlowEngine
import FlowVM

/// Flows' webhooks (schema v15).
extension SQLStore: HookRecords {
    func hookRow(_ r: SQLRow) -> FlowHook {
        FlowHook(tenant: r.text("tenant_id") ?? "", flow: r.text("flow") ?? "", channel: r.text("channel") ?? "",
                 sealedSigningSecret: r.text("signing_secret"), createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0))
    }

    public func saveHook(_ h: FlowHook, tokenHash: String) async throws {
        try await driver.transaction { db in
            try await db.execute("DELETE FROM flow_hooks WHERE tenant_id = $1 AND flow = $2", .text(h.tenant), .text(h.flow))
            try await db.execute(
                "INSERT INTO flow_hooks (token_hash, tenant_id, flow, channel, signing_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                .text(tokenHash), .text(h.tenant), .text(h.flow), .text(h.channel), h.sealedSigningSecret.map(SQLValue.text) ?? .null,
                .int(h.createdAt.milliseconds))
        }
    }

    public func hook(tokenHash: String) async throws -> FlowHook? {
        try await driver.transaction { db in
            try await db.execute("SELECT tenant_id, flow, channel, signing_secret, created_at FROM flow_hooks WHERE token_hash = $1", .text(tokenHash))
                .first.map(self.hookRow)
        }
    }

    public func hook(tenant: String, flow: String) async throws -> FlowHook? {
        try await driver.transaction { db in
            try await db.execute("SELECT tenant_id, flow, channel, signing_secret, created_at FROM flow_hooks WHERE tenant_id = $1 AND flow = $2",
                                 .text(tenant), .text(flow)).first.map(self.hookRow)
        }
    }

    public func deleteHook(tenant: String, flow: String) async throws -> Bool {
        try await driver.transaction { db in
            try await !db.execute("DELETE FROM flow_hooks WHERE tenant_id = $1 AND flow = $2 RETURNING token_hash", .text(tenant), .text(flow)).isEmpty
        }
    }
}
