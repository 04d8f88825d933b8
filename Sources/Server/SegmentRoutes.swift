import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/segments`: saved contact filters, evaluated each time they are used.
struct SegmentRoutes {
    let store: any SegmentRecords & ContactRecords & TenantRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("segments", use: list)
        group.post("segments", use: create)
        group.get("segments/{id}", use: get)
        group.patch("segments/{id}", use: update)
        group.delete("segments/{id}", use: delete)
        group.get("segments/{id}/contacts", use: contacts)
    }

    static let filterFields = ["tag", "attribute", "channel", "opted_in", "seen_after", "seen_before", "q"]

    /// Checks a segment's `filter` object (the contacts list's query parameters as fields: `tag` and `attribute` a text
    /// or a list of them, `opted_in` a boolean, the others text) and answers it as kept (`tag` and `attribute` as lists).
    static func filter(_ given: Value?) throws -> (ContactFilter, Value) {
        guard case .map(let m)? = given else { throw Problem(.badRequest, "filter must be an object of the contacts list's filters") }
        if let stray = m.keys.sorted().first(where: { !filterFields.contains($0) }) {
            throw Problem(.badRequest, "unknown filter \(stray.prefix(64)): one of \(filterFields.joined(separator: ", "))")
        }
        var kept: [String: Value] = [:]
        let parsed = try ContactRoutes.filter { name in
            guard let v = m[name] else { return [] }
            let texts: [String]
            switch (name, v) {
            case ("opted_in", .bool(let b)): texts = [b ? "true" : "false"]
            case ("opted_in", _): throw Problem(.badRequest, "filter.opted_in must be true or false")
            case ("tag", .list(let items)), ("attribute", .list(let items)):
                texts = try items.map { item in
                    guard case .string(let s) = item else { throw Problem(.badRequest, "filter.\(name) must be text or a list of texts") }
                    return s
                }
            case (_, .string(let s)): texts = [s]
            default: throw Problem(.badRequest, "filter.\(name) must be text")
            }
            kept[name] = name == "tag" || name == "attribute" ? .list(texts.map(Value.string)) : v
            return texts
        }
        return (parsed, .map(kept))
    }

    static func view(_ s: SegmentRecord) -> Value {
        ["id": .string(s.id), "name": .string(s.name), "filter": s.filter, "created_at": .string(s.createdAt.iso8601),
         "updated_at": .string(s.updatedAt.iso8601)]
    }

    private func existing(_ context: FlowlineRequestContext, _ caller: Caller) async throws -> SegmentRecord {
        let id = try context.parameters.require("id")
        guard let s = try await store.segment(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no segment \(id)") }
        return s
    }

    private static func refuseUnknown(_ body: [String: Value]) throws {
        if let stray = body.keys.sorted().first(where: { !["name", "filter"].contains($0) }) {
            throw Problem(.badRequest, "unknown field \(stray.prefix(64))")
        }
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let page = try Page(request)
        let (items, total) = try await store.segments(tenant: caller.tenant, limit: page.limit, offset: page.offset)
        return page.response("segments", items.map(Self.view), total: total)
    }

    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "saving segments needs a supervisor or an admin")
        let body = try await request.jsonObject(context: context)
        try Self.refuseUnknown(body)
        let name = try BodyText.identifier(body, "name", max: 100)
        let (_, filter) = try Self.filter(body["filter"])
        let now = engine.now
        let s = SegmentRecord(id: SegmentRecord.newID(), tenant: caller.tenant, name: name, filter: filter, createdAt: now, updatedAt: now)
        guard try await store.insertSegment(s) else {
            throw Problem(.conflict, "a segment is already named \(name)", extra: ["code": "name_taken"])
        }
        try await store.audit(context, caller, "segment.create", s.id, at: now)
        return json(Self.view(s), status: .created)
    }

    /// The segment, with how many contacts match it now.
    @Sendable func get(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let s = try await existing(context, caller)
        let (filter, _) = try Self.filter(s.filter)
        let (_, total) = try await store.contacts(tenant: caller.tenant, filter: filter, limit: 0, offset: 0)
        guard case .map(var m) = Self.view(s) else { return json(Self.view(s)) }
        m["count"] = .number(Double(total))
        return json(.map(m))
    }

    @Sendable func update(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "changing segments needs a supervisor or an admin")
        var s = try await existing(context, caller)
        let body = try await request.jsonObject(context: context)
        try Self.refuseUnknown(body)
        guard !body.isEmpty else { throw Problem(.badRequest, "name at least one field to change: name or filter") }
        if body["name"] != nil { s.name = try BodyText.identifier(body, "name", max: 100) }
        if body["filter"] != nil { s.filter = try Self.filter(body["filter"]).1 }
        s.updatedAt = engine.now
        switch try await store.updateSegment(s) {
        case nil: throw Problem(.notFound, "no segment \(s.id)")
        case false?: throw Problem(.conflict, "a segment is already named \(s.name)", extra: ["code": "name_taken"])
        case true?: break
        }
        try await store.audit(context, caller, "segment.update", s.id, at: s.updatedAt)
        return json(Self.view(s))
    }

    @Sendable func delete(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "deleting segments needs an admin")
        let id = try context.parameters.require("id")
        guard try await store.deleteSegment(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no segment \(id)") }
        try await store.audit(context, caller, "segment.delete", id, at: engine.now)
        return Response(status: .noContent)
    }

    /// The contacts the segment selects now, paged like `GET /v1/contacts`.
    @Sendable func contacts(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let s = try await existing(context, caller)
        let page = try Page(request)
        let (items, total) = try await store.contacts(tenant: caller.tenant, filter: try Self.filter(s.filter).0, limit: page.limit, offset: page.offset)
        return page.response("contacts", items.map(ContactRoutes.view), total: total)
    }
}
