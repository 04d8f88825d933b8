import FlowEngine
import FlowVM

/// Saved contact filters.
extension SQLStore: SegmentRecords {
    func segmentRow(_ r: SQLRow) -> SegmentRecord {
        SegmentRecord(id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", name: r.text("name") ?? "",
                      filter: Value(json: r.text("filter") ?? "{}") ?? .map([:]),
                      createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0), updatedAt: Timestamp(milliseconds: r.int("updated_at") ?? 0))
    }

    public func segments(tenant: String, limit: Int, offset: Int) async throws -> (items: [SegmentRecord], total: Int) {
        try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM segments WHERE tenant_id = $1", .text(tenant)).first?.int("n") ?? 0
            let rows = try await db.execute(
                "SELECT id, tenant_id, name, filter, created_at, updated_at FROM segments WHERE tenant_id = $1 ORDER BY name, id LIMIT $2 OFFSET $3",
                .text(tenant), .int(Int64(limit)), .int(Int64(offset)))
            return (rows.map(self.segmentRow), Int(total))
        }
    }

    public func segment(id: String, tenant: String) async throws -> SegmentRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT id, tenant_id, name, filter, created_at, updated_at FROM segments WHERE id = $1 AND tenant_id = $2",
                                 .text(id), .text(tenant)).first.map(self.segmentRow)
        }
    }

    public func insertSegment(_ s: SegmentRecord) async throws -> Bool {
        try await driver.transaction { db in
            try await !db.execute(
                """
                INSERT INTO segments (id, tenant_id, name, filter, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (tenant_id, name) DO NOTHING RETURNING id
                """, .text(s.id), .text(s.tenant), .text(s.name), .text(s.filter.jsonText), .int(s.createdAt.milliseconds),
                .int(s.updatedAt.milliseconds)).isEmpty
        }
    }

    public func updateSegment(_ s: SegmentRecord) async throws -> Bool? {
        try await driver.transaction { db in
            guard try await !db.execute("SELECT id FROM segments WHERE id = $1 AND tenant_id = $2\(self.forUpdate)", .text(s.id), .text(s.tenant)).isEmpty
            else { return nil }
            let taken = try await db.execute("SELECT id FROM segments WHERE tenant_id = $1 AND name = $2 AND id <> $3", .text(s.tenant), .text(s.name), .text(s.id))
            guard taken.isEmpty else { return false }
            try await db.execute("UPDATE segments SET name = $3, filter = $4, updated_at = $5 WHERE id = $1 AND tenant_id = $2",
                                 .text(s.id), .text(s.tenant), .text(s.name), .text(s.filter.jsonText), .int(s.updatedAt.milliseconds))
            return true
        }
    }

    public func deleteSegment(id: String, tenant: String) async throws -> Bool {
        try await driver.transaction { db in
            try await !db.execute("DELETE FROM segments WHERE id = $1 AND tenant_id = $2 RETURNING id", .text(id), .text(tenant)).isEmpty
        }
    }
}
