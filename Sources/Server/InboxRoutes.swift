import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/inbox`: conversations handed to humans. Agents list them by queue, claim one, write to the contact,
/// then hand it back to the flow (`POST /v1/conversations/{id}/handback`) or close it (`.../cancel`).
struct InboxRoutes {
    let store: any ConversationRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("inbox", use: list)
        group.post("inbox/{id}/claim", use: claim)
        group.post("inbox/{id}/messages", use: message)
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
        return json(["id": .string(id), "agent": .string(caller.keyID)])
    }

    @Sendable func message(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let id = try context.parameters.require("id")
        guard try await store.conversation(id: id, tenant: caller.tenant) != nil else { throw Problem(.notFound, "no conversation \(id)") }
        let text = try await request.decode(AgentMessage.self, context: context).text
        guard try await store.agentMessage(conversation: id, tenant: caller.tenant, text: text, agent: caller.keyID, now: engine.now) else {
            throw Problem(.conflict, "the conversation is not with an agent")
        }
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
