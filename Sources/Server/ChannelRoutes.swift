import FlowEngine
import FlowRuntime
import FlowVM
import Foundation
import Hummingbird

/// `/v1/channels`: a tenant's channels, and the `api` channel's inbound endpoint.
struct ChannelRoutes {
    let store: any TenantRecords
    let engine: Engine
    let secrets: SecretBox?
    let channels: Channels

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.post("channels", use: create)
        group.get("channels", use: list)
        group.get("channels/kinds", use: kinds)
        group.post("channels/{id}/inbound", use: inbound)
    }

    func channel(_ c: ChannelRecord) -> Value {
        var v: [String: Value] = [
            "id": .string(c.id), "kind": .string(c.kind), "name": .string(c.name), "callback_url": c.callbackURL.map(Value.string) ?? .null,
            "created_at": .string(c.createdAt.iso8601), "signed": .bool(c.sealedSecret != nil),
        ]
        // Settings are shown; secrets never are.
        if case .map(let config) = c.config { for (key, value) in config { v[key] = value } }
        if channels[c.kind]?.receivesWebhooks == true { v["webhook_path"] = .string("/webhooks/\(c.kind)/\(c.id)") }
        return .map(v)
    }

    /// `GET /v1/channels/kinds`: every kind a channel may be, with its fields and their JSON Schemas, as the drivers
    /// declare them: what a builder draws the channel form from.
    @Sendable func kinds(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        _ = try context.requireCaller()
        return json(["kinds": .list(channels.drivers.map { d in
            [
                "kind": .string(d.kind), "summary": .string(d.summary), "conversations": .bool(d.carriesConversations),
                "webhooks": .bool(d.receivesWebhooks), "reply_window": d.replyWindow.map { .number(Double($0)) } ?? .null,
                "actions": .list(d.actions.map { .string($0.name) }),
                "fields": .list(d.fields.map { f in
                    ["name": .string(f.name), "required": .bool(f.required), "secret": .bool(f.isSecret), "schema": f.schema]
                }),
            ]
        })])
    }

    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "configuring channels needs an admin")
        let body = try await request.jsonObject(context: context)
        guard case .string(let kindName)? = body["kind"], let kind = channels[kindName] else {
            throw Problem(.badRequest, "kind must be one of " + channels.drivers.map(\.kind).sorted().joined(separator: ", "))
        }
        let name = try BodyText.identifier(body, "name", max: 100)
        // Every field any kind declares is checked whatever the kind, so a request is valid or not on its own.
        for (field, declared) in channels.fieldsByName.sorted(by: { $0.key < $1.key }) {
            if let value = body[field], value != .null, let problem = declared.problem(with: value) { throw Problem(.badRequest, problem) }
        }
        if let problem = kind.problem(with: body) { throw Problem(.badRequest, problem) }
        // The secret that signs callbacks is write-only: given by the caller, or generated and shown once.
        var secret: String?
        var generated = false
        if let value = body["secret"], value != .null {
            guard case .string(let s) = value, (16...256).contains(s.unicodeScalars.count) else {
                throw Problem(.badRequest, "secret must be text of 16 to 256 characters")
            }
            secret = s
        }
        var (sealed, config) = kind.split(body)
        var record = ChannelRecord(id: "ch_" + APIKeys.random(16), tenant: caller.tenant, kind: kind.kind, name: name,
                                            callbackURL: nil, createdAt: engine.now)
        // A kind without secret fields (`api`) may have one secret that signs what it sends: given, or generated and shown once.
        if !kind.fields.contains(where: \.isSecret) {
            record.callbackURL = config.removeValue(forKey: "callback_url")?.text
            record.config = .map(config)
            if secret == nil, record.callbackURL != nil {
                secret = "whsec_" + APIKeys.random(32)
                generated = true
            }
        } else {
            record.config = .map(config)
            // Several secrets (a WhatsApp number's three, a Stripe key and its webhook secret) are sealed together.
            secret = sealed.isEmpty ? nil : Value.map(sealed).jsonText
        }
        if let secret {
            guard let secrets else {
                throw Problem(.unavailable, "this server has no FLOWLINE_SECRET_KEY, so it cannot store channel secrets")
            }
            record.sealedSecret = try secrets.seal(secret, context: record.secretContext)
        }
        try await store.insertChannel(record)
        try await store.audit(context, caller, "channel.create", record.id, at: engine.now)
        var answer = channel(record)
        if generated, let secret, case .map(var m) = answer {
            m["signing_secret"] = .string(secret)
            answer = .map(m)
        }
        return json(answer, status: .created)
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let page = try Page(request)
        let (items, total) = try await store.channels(tenant: caller.tenant, limit: page.limit, offset: page.offset)
        return page.response("channels", items.map(channel), total: total)
    }

    /// `{"from", "text", "id", "payload"?}`: 202 once the message is durably stored.
    @Sendable func inbound(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let id = try context.parameters.require("id")
        guard let channel = try await store.channel(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no channel \(id)") }
        guard channel.kind == "api" else {
            throw Problem(.conflict, "inbound is for api channels; a \(channel.kind) channel receives at its webhook_path")
        }
        let body = try await request.decode(InboundBody.self, context: context)
        let result = try await engine.ingest(Inbound(
            tenant: caller.tenant, channel: channel.id, channelKind: channel.kind, contact: body.from, contactName: body.name,
            providerID: body.id, message: InboundMessage(text: body.text ?? "", payload: body.payload, kind: body.payload == nil ? "text" : "button")))
        switch result {
        case .accepted(let conversation, let started):
            context.logger.info("inbound message stored", metadata: ["conversation": "\(conversation)", "started": "\(started)"])
            return try InboundAnswer(status: started ? "started" : "accepted", conversation: conversation).response(status: .accepted)
        case .duplicate:
            return try InboundAnswer(status: "duplicate").response(status: .accepted)
        case .unrouted:
            return try InboundAnswer(status: "unrouted", detail: "no open conversation and no published flow's trigger matched").response(status: .accepted)
        }
    }

    /// `POST /v1/channels/{id}/inbound`: a contact's message on an `api` channel.
    struct InboundBody: JSONRequest {
        /// The contact's address.
        var from: String
        /// The sender's message id, used to ignore repeats.
        var id: String
        var text: String?
        /// The id of a button or list row the contact chose.
        var payload: String?
        /// The contact's name.
        var name: String?

        func validated() throws -> InboundBody {
            _ = try BodyText.identifier(from, "from", max: 128)
            _ = try BodyText.identifier(id, "id", max: 256)
            if let text { _ = try BodyText.text(text, "text") }
            if let payload {
                guard !payload.isEmpty else { throw Problem(.badRequest, "payload must be text") }
                _ = try BodyText.text(payload, "payload")
            }
            guard text != nil || payload != nil else { throw Problem(.badRequest, "text or payload is required") }
            if let name { _ = try BodyText.identifier(name, "name", max: 256) }
            return self
        }
    }

    struct InboundAnswer: JSONResponse {
        var status: String
        var conversation: String?
        var detail: String?
    }
}
