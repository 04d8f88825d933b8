import FlowEngine
import FlowStore
import FlowVM
import Hummingbird

/// `/v1/conversations`: list, detail with trace, messages, cancel, retry, hand back.
struct ConversationRoutes {
    let store: SQLStore
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
        func number(_ name: Substring, default value: Int, in range: ClosedRange<Int>) throws -> Int {
            guard let text = q[name].map(String.init) else { return value }
            guard let n = Int(text), range.contains(n) else {
                throw Problem(.badRequest, "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
        let limit = try number("limit", default: 100, in: 1...500)
        let offset = try number("offset", default: 0, in: 0...1_000_000)
        var all = try await store.conversations(tenant: caller.tenant, status: status, contact: param("contact"))
        if let flow = param("flow") { all = all.filter { $0.flow == flow } }
        if let channel = param("channel") { all = all.filter { $0.channel == channel } }
        let page = all.dropFirst(offset).prefix(limit)
        return json(["conversations": .list(page.map(Self.summary)), "total": .number(Double(all.count)),
                     "limit": .number(Double(limit)), "offset": .number(Double(offset))])
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
            return .map(v)
        })])
    }

    @Sendable func cancel(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        try await engine.cancel(conversation: c.id, tenant: caller.tenant)
        return json(["id": .string(c.id), "requested": "cancel"], status: .accepted)
    }

    @Sendable func retry(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        guard caller.allows(.supervisor) else { throw Problem(.forbidden, "retrying needs a supervisor or admin key") }
        try await engine.retry(conversation: c.id, tenant: caller.tenant)
        return json(["id": .string(c.id), "requested": "retry"], status: .accepted)
    }

    @Sendable func handback(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (caller, c) = try await find(context)
        guard c.status == .handoff else { throw Problem(.conflict, "the conversation is not with an agent") }
        try await engine.handBack(conversation: c.id, tenant: caller.tenant)
        return json(["id": .string(c.id), "requested": "handback"], status: .accepted)
    }
}
