import FlowEngine
import FlowCompiler
import FlowVM
import Hummingbird

/// `/v1/keys`: an admin creates, lists (prefix only) and revokes its tenant's API keys.
struct KeyRoutes {
    let store: any TenantRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.post("keys", use: create)
        group.get("keys", use: list)
        group.delete("keys/{id}", use: revoke)
    }

    private func admin(_ context: FlowlineRequestContext) throws -> Caller {
        let caller = try context.requireCaller(.admin, "managing keys needs an admin")
        return caller
    }

    /// `POST /v1/keys`.
    struct NewKey: JSONRequest {
        var role: String
        var label: String?

        func validated() throws -> NewKey {
            guard let role = Caller.Role(rawValue: role), role != .platform else {
                throw Problem(.badRequest, "role must be admin, supervisor or agent")
            }
            if let label { _ = try BodyText.identifier(label, "label", max: 100, allowEmpty: true) }
            return self
        }
    }

    /// A key as it is created: the only time `key` is shown.
    struct CreatedKey: JSONResponse {
        var id: String
        var key: String
        var prefix: String
        var role: String
        var label: String
    }

    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let body = try await request.decode(NewKey.self, context: context)
        let role = Caller.Role(rawValue: body.role)!  // validated
        let label = body.label ?? ""
        let (key, record) = try await APIKeys.create(store: store, tenant: caller.tenant, role: role, label: label)
        try await store.audit(context, caller, "key.create", record.id, at: engine.now)
        return try CreatedKey(id: record.id, key: key, prefix: record.prefix, role: role.rawValue, label: label).response(status: .created)
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let page = try Page(request)
        let (items, total) = try await store.apiKeys(tenant: caller.tenant, limit: page.limit, offset: page.offset)
        return page.response("keys", items.map { k in
            ["id": .string(k.id), "prefix": .string(k.prefix), "role": .string(k.role), "label": .string(k.label),
             "created_at": .string(k.createdAt.iso8601), "revoked": .bool(k.revoked)]
        }, total: total)
    }

    @Sendable func revoke(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let id = try context.parameters.require("id")
        guard try await store.revokeAPIKey(id: id, tenant: caller.tenant, at: engine.now) else { throw Problem(.notFound, "no key \(id)") }
        try await store.audit(context, caller, "key.revoke", id, at: engine.now)
        return Response(status: .noContent)
    }
}

/// `GET /v1/blocks`: the palette a builder draws: block types with their keys and JSON Schemas (from `BlockTypes`, the
/// table the compiler reads), and connector actions with schemas.
struct CatalogRoutes {
    let catalog: ActionCatalog

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("blocks") { _, context in
            _ = try context.requireCaller()
            return json([
                "blocks": .list(BlockTypes.all.map {
                    ["type": .string($0.name), "summary": .string($0.summary), "keys": .list($0.keys.map(Value.string)), "schema": $0.schema,
                     "ports": .list(FlowGraph.ports(of: $0).map(Value.string)), "params": FlowGraph.paramsSchema(of: $0),
                     "port_paths": .map(FlowGraph.portPaths(of: $0).mapValues(Value.string))]
                }),
                "actions": .list(catalog.actions.values.sorted { $0.name < $1.name }.map {
                    ["name": .string($0.name), "summary": .string($0.summary), "parameters": $0.parameters, "result": $0.result]
                }),
            ])
        }
    }
}

/// `POST /v1/tenants`: a platform key creates a tenant and gets its first admin key (shown once).
struct TenantRoutes {
    let store: any TenantRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.post("tenants", use: create)
    }

    /// `POST /v1/tenants`.
    struct NewTenant: JSONRequest {
        var id: String
        var name: String?

        func validated() throws -> NewTenant {
            guard (2...64).contains(id.count), id.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }) else {
                throw Problem(.badRequest, "id must be 2 to 64 lowercase letters, digits or '-'")
            }
            if let name { _ = try BodyText.identifier(name, "name", max: 200) }
            return self
        }
    }

    /// A new tenant and its first admin key, shown once.
    struct CreatedTenant: JSONResponse {
        var id: String
        var name: String
        var adminKey: String
        var adminKeyID: String

        enum CodingKeys: String, CodingKey {
            case id, name
            case adminKey = "admin_key"
            case adminKeyID = "admin_key_id"
        }
    }

    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.platform, "creating tenants needs the platform key")
        let body = try await request.decode(NewTenant.self, context: context)
        let (id, name) = (body.id, body.name ?? body.id)
        guard try await !store.tenantExists(id) else { throw Problem(.conflict, "tenant \(id) exists") }
        try await store.ensureTenant(id: id, name: name)
        let (key, record) = try await APIKeys.create(store: store, tenant: id, role: .admin, label: "created by the platform")
        try await store.audit(AuditEntry(tenant: id, actor: caller.keyID, action: "tenant.create", subject: id, request: context.id, at: engine.now))
        return try CreatedTenant(id: id, name: name, adminKey: key, adminKeyID: record.id).response(status: .created)
    }
}
