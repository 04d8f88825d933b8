import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/inbox`: conversations handed to humans. Agents list them by queue, claim one, write to the contact,
/// then hand it back to the flow (`POST /v1/conversations/{id}/handback`) or close it (`.../cancel`).
struct InboxRoutes {
    let store: any ConversationRecords & TenantRecords & PeopleRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("inbox", use: list)
        group.post("inbox/{id}/claim", use: claim)
        group.post("inbox/{id}/messages", use: message)
        group.post("inbox/{id}/transfer", use: transfer)
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let queue = request.uri.queryParameters["queue"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        let page = try Page(request)
        // The queue lives in the continuation, so the inbox is filtered here; it holds what humans work through.
        let entries = try await store.inbox(tenant: caller.tenant, queue: queue)
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
        guard try await store.conversation(id: id, tenant: caller.tenant) != nil else { throw Problem(.notFound, "no conversation \(id)") }
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
        guard try await store.conversation(id: id, tenant: caller.tenant) != nil else { throw Problem(.notFound, "no conversation \(id)") }
        let to = try await request.decode(Transfer.self, context: context).agent ?? caller.keyID
        // A person of this tenant (`usr_…`), or one of its keys.
        let isMember = try await store.memberships(user: to).contains { $0.tenant == caller.tenant }
        let key = isMember ? nil : try await store.apiKey(id: to, tenant: caller.tenant)
        guard isMember || (key.map { !$0.revoked && $0.role != Caller.Role.platform.rawValue } ?? false) else {
            throw Problem(.badRequest, "agent must be a person of this tenant or the id of one of its keys")
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
        guard try await store.conversation(id: id, tenant: caller.tenant) != nil else { throw Problem(.notFound, "no conversation \(id)") }
        let text = try await request.decode(AgentMessage.self, context: context).text
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
}
