import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/inbox`: conversations handed to humans. Agents list them by queue, claim one, write to the contact,
/// then hand it back to the flow (`POST /v1/conversations/{id}/handback`) or close it (`.../cancel`).
/// `/v1/queues`: a queue restricted to named agents is seen and worked only by them (and supervisors and admins).
struct InboxRoutes {
    let store: any ConversationRecords & TenantRecords & PeopleRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("inbox", use: list)
        group.post("inbox/{id}/claim", use: claim)
        group.post("inbox/{id}/messages", use: message)
        group.post("inbox/{id}/transfer", use: transfer)
        group.get("queues", use: queues)
        group.put("queues/{name}", use: restrict)
        group.delete("queues/{name}", use: open)
    }

    /// Whether `who` (of `role`) may work `queue`: supervisors and admins always; an agent when the queue is open to
    /// every agent or names them.
    static func mayWork(_ who: String, _ role: Caller.Role, queue: String, _ restricted: [String: [String]]) -> Bool {
        role != .agent || restricted[queue].map { $0.contains(who) } ?? true
    }

    /// The queue a handed-off conversation waits in, once the caller may work it; 403 for an agent the queue does not name.
    private func checkQueue(_ c: ConversationRecord, _ caller: Caller) async throws {
        guard case .handoff(let queue)? = c.continuation?.wait else { return }
        guard Self.mayWork(caller.keyID, caller.role, queue: queue, try await store.queueAgents(tenant: caller.tenant)) else {
            throw Problem(.forbidden, "queue \(queue) is restricted to its named agents")
        }
    }

    /// The role of a person of this tenant (`usr_…`) or one of its live keys, by id; nil for anyone else.
    private func agentRole(_ id: String, tenant: String) async throws -> Caller.Role? {
        if let m = try await store.memberships(user: id).first(where: { $0.tenant == tenant }) { return Caller.Role(rawValue: m.role) }
        guard let key = try await store.apiKey(id: id, tenant: tenant), !key.revoked, key.role != Caller.Role.platform.rawValue else { return nil }
        return Caller.Role(rawValue: key.role)
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let queue = request.uri.queryParameters["queue"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        let page = try Page(request)
        // The queue lives in the continuation, so the inbox is filtered here; it holds what humans work through.
        // Supervisors and admins work every queue: the restrictions matter to agents only.
        let restricted = caller.allows(.supervisor) ? [:] : try await store.queueAgents(tenant: caller.tenant)
        let entries = try await store.inbox(tenant: caller.tenant, queue: queue).filter {
            Self.mayWork(caller.keyID, caller.role, queue: $0.queue, restricted)
        }
        return page.response("conversations", page.slice(entries).map { e in
            var v = ConversationRoutes.summary(e.conversation)
            if case .map(var m) = v {
                m["queue"] = .string(e.queue)
                m["agent"] = e.agent.map(Value.string) ?? .null
                v = .map(m)
            }
            return v
        }, total: entries.count)
    }

    @Sendable func claim(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let id = try context.parameters.require("id")
        guard let c = try await store.conversation(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no conversation \(id)") }
        try await checkQueue(c, caller)
        guard try await store.claim(conversation: id, tenant: caller.tenant, agent: caller.keyID) else {
            throw Problem(.conflict, "the conversation is not in the inbox or another agent has it")
        }
        try await store.audit(context, caller, "inbox.claim", id, at: engine.now)
        return json(["id": .string(id), "agent": .string(caller.keyID)])
    }

    /// `{"agent"?}`: a supervisor or admin gives a handed-off conversation to another agent (a key id of this tenant),
    /// or takes it over (no `agent`), whoever held it.
    @Sendable func transfer(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "transferring a conversation needs a supervisor or admin")
        let id = try context.parameters.require("id")
        guard let c = try await store.conversation(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no conversation \(id)") }
        let to = try await request.decode(Transfer.self, context: context).agent ?? caller.keyID
        guard let role = try await agentRole(to, tenant: caller.tenant) else {
            throw Problem(.badRequest, "agent must be a person of this tenant or the id of one of its keys")
        }
        if case .handoff(let queue)? = c.continuation?.wait,
           !Self.mayWork(to, role, queue: queue, try await store.queueAgents(tenant: caller.tenant)) {
            throw Problem(.conflict, "\(to) is not one of queue \(queue)'s agents")
        }
        guard try await store.transfer(conversation: id, tenant: caller.tenant, to: to) else {
            throw Problem(.conflict, "the conversation is not in the inbox")
        }
        try await store.audit(context, caller, "inbox.transfer", "\(id) -> \(to)", at: engine.now)
        return json(["id": .string(id), "agent": .string(to)])
    }

    struct Transfer: JSONRequest {
        /// Who gets it: a key id of this tenant; the caller when absent.
        var agent: String?

        func validated() throws -> Transfer {
            if let agent { _ = try BodyText.identifier(agent, "agent", max: 64) }
            return self
        }
    }

    @Sendable func message(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let id = try context.parameters.require("id")
        guard let c = try await store.conversation(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no conversation \(id)") }
        let text = try await request.decode(AgentMessage.self, context: context).text
        try await checkQueue(c, caller)
        switch try await store.agentMessage(conversation: id, tenant: caller.tenant, text: text, agent: caller.keyID, now: engine.now) {
        case .notWithAnAgent:
            throw Problem(.conflict, "the conversation is not with an agent")
        case .claimedByAnother:
            throw Problem(.conflict, "another agent holds this conversation; a supervisor can transfer it")
        case .queued:
            engine.outboxChanged()
        }
        // Who wrote it is in the history; the text is not in the audit log (it may be personal).
        try await store.audit(context, caller, "inbox.message", id, at: engine.now)
        return try Queued(id: id, queued: true).response(status: .accepted)
    }

    /// `POST /v1/inbox/{id}/messages`: what the agent writes.
    struct AgentMessage: JSONRequest {
        var text: String

        func validated() throws -> AgentMessage {
            guard !text.isEmpty, text.count <= 4096 else { throw Problem(.badRequest, "text is required (at most 4096 characters)") }
            _ = try BodyText.text(text, "text")
            return self
        }
    }

    struct Queued: JSONResponse {
        var id: String
        var queued: Bool
    }

    struct Queue: JSONResponse {
        var name: String
        var agents: [String]
    }

    struct Queues: JSONResponse {
        var items: [Queue]
    }

    /// `GET /v1/queues`: the restricted queues and their agents (a queue not listed is open to every agent).
    @Sendable func queues(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        return try Queues(items: try await store.queueAgents(tenant: caller.tenant).sorted { $0.key < $1.key }.map { Queue(name: $0.key, agents: $0.value) })
            .response()
    }

    struct Restriction: JSONRequest {
        var agents: [String]

        func validated() throws -> Restriction {
            guard (1...200).contains(agents.count) else { throw Problem(.badRequest, "agents must name 1 to 200 agents") }
            for a in agents { _ = try BodyText.identifier(a, "agents", max: 64) }
            return self
        }
    }

    private static func queueName(_ context: FlowlineRequestContext) throws -> String {
        try BodyText.pathIdentifier(context, "name", max: 100)
    }

    /// `PUT /v1/queues/{name} {"agents": [...]}`: only these people or keys (and supervisors and admins) see and work
    /// the queue's conversations; a conversation already held stays with its holder until transferred.
    @Sendable func restrict(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "restricting a queue needs a supervisor or admin")
        let name = try Self.queueName(context)
        let agents = try await request.decode(Restriction.self, context: context).agents
        for a in agents where try await agentRole(a, tenant: caller.tenant) == nil {
            throw Problem(.notFound, "no person or key \(a) in this tenant")
        }
        try await store.setQueueAgents(tenant: caller.tenant, queue: name, agents: agents)
        try await store.audit(context, caller, "queue.restrict", "\(name): \(Set(agents).sorted().joined(separator: ", "))", at: engine.now)
        return try Queue(name: name, agents: Set(agents).sorted()).response()
    }

    /// `DELETE /v1/queues/{name}`: the queue is open to every agent again.
    @Sendable func open(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "opening a queue needs a supervisor or admin")
        let name = try Self.queueName(context)
        try await store.setQueueAgents(tenant: caller.tenant, queue: name, agents: [])
        try await store.audit(context, caller, "queue.open", name, at: engine.now)
        return Response(status: .noContent)
    }
}
