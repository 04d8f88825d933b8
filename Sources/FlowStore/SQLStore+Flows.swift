import FlowEngine
import FlowVM
import Foundation
import Logging

/// Tenants, compiled programs and published flows.
extension SQLStore {
    // MARK: Tenants, programs, flows

    public func ensureTenant(id: String, name: String) async throws {
        try await driver.transaction { db in
            try await db.execute("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                                 .text(id), .text(name), .int(Timestamp(Date()).milliseconds))
        }
    }

    public func saveProgram(_ program: Program) async throws {
        try await driver.transaction { db in try await self.insertProgram(program, db) }
    }

    func insertProgram(_ program: Program, _ db: any SQLExecutor) async throws {
        try await db.execute(
            "INSERT INTO programs (hash, name, bytecode, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
            .text(program.hash), .text(program.name), .blob(program.encoded()), .int(Timestamp(Date()).milliseconds))
    }

    public func program(hash: String) async throws -> Program? {
        try await driver.transaction { db in try await self.loadProgram(hash, db) }
    }

    func loadProgram(_ hash: String, _ db: any SQLExecutor) async throws -> Program? {
        guard let bytes = try await db.execute("SELECT bytecode FROM programs WHERE hash = $1", .text(hash)).first?.blob("bytecode")
        else { return nil }
        return try Program(decoding: bytes)
    }

    public func publish(tenant: String, program: Program, source: String, at: Timestamp) async throws -> Int {
        try await driver.transaction { db in
            try await self.insertProgram(program, db)
            let last = try await db.execute(
                "SELECT MAX(version) AS v FROM flow_versions WHERE tenant_id = $1 AND flow = $2", .text(tenant), .text(program.name))
            let version = Int(last.first?.int("v") ?? 0) + 1
            let flow = PublishedFlow(tenant: tenant, version: version, program: program)
            try await db.execute(
                """
                INSERT INTO flow_versions (tenant_id, flow, version, program_hash, source, trigger_channel, keywords, published_at, catch_all)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                .text(tenant), .text(program.name), .int(Int64(version)), .text(program.hash), .text(source),
                flow.triggerChannel.map(SQLValue.text) ?? .null, .text(Value.list(flow.keywords.map(Value.string)).jsonText),
                .int(at.milliseconds), .int(flow.catchAll ? 1 : 0))
            try await self.replaceSchedule(tenant: tenant, version: version, program: program, at: at, db)
            return version
        }
    }

    public func publishedFlows(tenant: String) async throws -> [PublishedFlow] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT f.flow, f.version, f.program_hash, f.trigger_channel, f.keywords, f.catch_all FROM flow_versions f
                WHERE f.tenant_id = $1 AND f.version = (SELECT MAX(version) FROM flow_versions g
                  WHERE g.tenant_id = f.tenant_id AND g.flow = f.flow)
                ORDER BY f.flow
                """, .text(tenant)
            ).map { r in
                var keywords: [String] = []
                if case .list(let k)? = Value(json: r.text("keywords") ?? "[]") { keywords = k.map(\.text) }
                return PublishedFlow(tenant: tenant, name: r.text("flow") ?? "", version: Int(r.int("version") ?? 0),
                                     programHash: r.text("program_hash") ?? "", triggerChannel: r.text("trigger_channel"),
                                     keywords: keywords, catchAll: r.int("catch_all") != 0)
            }
        }
    }
}
