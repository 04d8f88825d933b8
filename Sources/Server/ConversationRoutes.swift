import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/conversations`: list, detail with trace, messages, cancel, retry, hand back.
struct ConversationRoutes {
    let store: any ConversationRecords & TenantRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("conversations", use: list)
        group.get("conversations/{id}", use: detail)
        group.get("conversations/{id}/messages", use: messages)
        group.post("conversations/{id}/cancel", use: cancel)
        group.post("conversations/{id}/retry", use: retry)
        group.post("conversations/{id}/handback", use: handback)
    }

    static func summary(_ c: ConversationRecord) -> Value {
        ["id": .string(c.id), "status": .string(c.status.rawValue), "flow": .string(c.flow), "contact": .string(c.contact),
         "channel": .string(c.channel), "wait": c.continuation?.wait?.value ?? .null, "failure": c.failure.map(Value.string) ?? .null,
         "created_at": .string(c.createdAt.iso8601), "updated_at": .string(c.updatedAt.iso8601)]
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        // An empty query value means no filter.
        let q = request.uri.queryParameters
        func param(_ name: Substring) -> String? { q[name].map(String.init).flatMap { $0.isEmpty ? nil : $0 } }
        var status: ConversationStatus?
        if let s = q["status"].map(String.init) {
            guard let v = ConversationStatus(rawValue: String(s)) else { throw Problem(.badRequest, "unknown status \(s)") }
            status = v
        }
        let page = try Page(request)
        let filter = ConversationFilter(status: status, contact: param("contact"), flow: param("flow"), channel: param("channel"))
        let (items, total) = try await store.conversations(tenant: caller.tenant, filter: filter, limit: page.limit, offset: page.offset)
        return page.response("conversations", items.map(Self.summary), total: total)
    }

    private func find(_ context: FlowlineRequestContext) async throws -> (Caller, ConversationRecord) {
        let caller = try context.requireCaller()
        let id = try context.parameters.require("id")
        guard let c = try await store.conversation(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no conversation \(id)") }
        return (caller, c)
    }

    @Sendable func detail(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        var v = Self.summary(c)
        let traces = try await store.traces(conversation: c.id, tenant: caller.tenant)
        if case .map(var m) = v {
            m["trace"] = .list(traces.map {
                ["event": $0.event, "visited": .list($0.visited.map(Value.string)), "effects": $0.effects, "wait": $0.wait,
                 "status": .string($0.status.rawValue), "at": .string($0.at.iso8601)]
            })
            m["deliveries"] = .list(try await store.statuses(conversation: c.id, tenant: caller.tenant).map {
                ["message_id": .string($0.messageID), "status": .string($0.status), "error_code": $0.errorCode.map(Value.string) ?? .null,
                 "at": .string($0.at.iso8601)]
            })
            v = .map(m)
        }
        return json(v)
    }

    @Sendable func messages(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        let messages = try await store.messages(conversation: c.id, tenant: caller.tenant)
        return json(["messages": .list(messages.map { m in
            var v: [String: Value] = ["direction": .string(m.direction.rawValue), "text": .string(m.text), "at": .string(m.at.iso8601)]
            if case .list(let b) = m.extra["buttons"] { v["buttons"] = .list(b) }
            if m.extra["list"] != .null { v["list"] = m.extra["list"] }
            if m.direction == .inbound, m.extra["payload"] != .null { v["payload"] = m.extra["payload"] }
            if case .string(let agent) = m.extra["agent"] { v["agent"] = .string(agent) }
            return .map(v)
        })])
    }

    @Sendable func cancel(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        try await engine.cancel(conversation: c.id, tenant: caller.tenant)
        try await store.audit(context, caller, "conversation.cancel", c.id, at: engine.now)
        return json(["id": .string(c.id), "requested": "cancel"], status: .accepted)
    }

    @Sendable func retry(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        // The role first: a key that may not retry learns nothing about which conversations exist.
        _ = try context.requireCaller(.supervisor, "retrying needs a supervisor or admin")
        let (caller, c) = try await find(context)
        try await engine.retry(conversation: c.id, tenant: caller.tenant)
        try await store.audit(context, caller, "conversation.retry", c.id, at: engine.now)
        return json(["id": .string(c.id), "requested": "retry"], status: .accepted)
    }

    @Sendable func handback(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        guard c.status == .handoff else { throw Problem(.conflict, "the conversation is not with an agent") }
        try await engine.handBack(conversation: c.id, tenant: caller.tenant)
        try await store.audit(context, caller, "conversation.handback", c.id, at: engine.now)
        return json(["id": .string(c.id), "requested": "handback"], status: .accepted)
    }
}
