import FlowEngine
import FlowStore
import FlowVM
import Foundation
import Hummingbird

/// `/v1/channels`: a tenant's channels, and the `api` channel's inbound endpoint.
struct ChannelRoutes {
    let store: SQLStore
    let engine: Engine
    let secrets: SecretBox?

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.post("channels", use: create)
        group.get("channels", use: list)
        group.post("channels/{id}/inbound", use: inbound)
    }

    static func channel(_ c: SQLStore.ChannelRecord) -> Value {
        var v: [String: Value] = [
            "id": .string(c.id), "kind": .string(c.kind), "name": .string(c.name), "callback_url": c.callbackURL.map(Value.string) ?? .null,
            "created_at": .string(c.createdAt.iso8601), "signed": .bool(c.sealedSecret != nil),
        ]
        if c.kind == "whatsapp" {
            v["phone_number_id"] = c.config["phone_number_id"]
            v["webhook_path"] = .string("/webhooks/whatsapp/\(c.id)")
        }
        return .map(v)
    }

    /// A WhatsApp Cloud API number: its id (public), and the verify token, app secret and access token (write-only,
    /// sealed together). Meta is then pointed at `webhook_path`.
    private func createWhatsApp(_ body: [String: Value], name: String, caller: Caller) async throws -> Response {
        // `create` has checked every field's form; here is what a WhatsApp channel cannot do without.
        guard case .string(let phone)? = body["phone_number_id"] else {
            throw Problem(.badRequest, "phone_number_id is required: the Cloud API's id of the business number (digits)")
        }
        var sealed: [String: Value] = [:]
        for key in ["verify_token", "app_secret", "access_token"] {
            if case .string(let text)? = body[key] { sealed[key] = .string(text) }
        }
        for key in ["verify_token", "app_secret"] where sealed[key] == nil {
            throw Problem(.badRequest, "\(key) is required")
        }
        guard let secrets else {
            throw Problem(.unavailable, "this server has no FLOWLINE_SECRET_KEY, so it cannot store channel secrets")
        }
        var config: [String: Value] = ["phone_number_id": .string(phone)]
        // Where the Graph API is (a test double, a proxy); Meta's own by default.
        if let graph = try Self.httpURL(body["graph_url"], "graph_url") { config["graph_url"] = .string(graph) }
        var record = SQLStore.ChannelRecord(id: "ch_" + APIKeys.random(16), tenant: caller.tenant, kind: "whatsapp", name: name,
                                            callbackURL: nil, createdAt: engine.now, config: .map(config))
        record.sealedSecret = try secrets.seal(Value.map(sealed).jsonText, context: record.secretContext)
        try await store.insertChannel(record)
        try await store.audit(tenant: caller.tenant, actor: caller.keyID, action: "channel.create", subject: record.id, at: engine.now)
        return json(Self.channel(record), status: .created)
    }

    /// An optional http(s) URL field, checked as the document's pattern says; nil when absent.
    static func httpURL(_ value: Value?, _ field: String) throws -> String? {
        guard let value, value != .null else { return nil }
        guard case .string(let url) = value, url.count <= 2000, url.allSatisfy(\.isASCII), let u = URL(string: url),
              ["http", "https"].contains(u.scheme ?? ""), let host = u.host, !host.isEmpty,
              host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-.:[]".contains($0)) }) else {
            throw Problem(.badRequest, "\(field) must be an http or https URL")
        }
        return url
    }

    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        guard caller.allows(.admin) else { throw Problem(.forbidden, "configuring channels needs an admin key") }
        let body = try await request.jsonObject(context: context)
        guard body["kind"] == "api" || body["kind"] == "whatsapp" else {
            throw Problem(.badRequest, "kind must be \"api\" or \"whatsapp\" (other channels come with their connectors)")
        }
        guard case .string(let name)? = body["name"], !name.isEmpty, name.count <= 100 else {
            throw Problem(.badRequest, "name is required (at most 100 characters)")
        }
        // Every field the document describes is checked whatever the kind, so a request is valid or not on its own.
        for key in ["verify_token", "app_secret", "access_token"] {
            if let value = body[key], value != .null {
                guard case .string(let text) = value, (8...4096).contains(text.unicodeScalars.count) else {
                    throw Problem(.badRequest, "\(key) must be text of 8 to 4096 characters")
                }
            }
        }
        if let value = body["phone_number_id"] {
            guard case .string(let phone) = value, (1...32).contains(phone.count), phone.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw Problem(.badRequest, "phone_number_id must be the Cloud API's id of the business number (digits)")
            }
        }
        let callback = try Self.httpURL(body["callback_url"], "callback_url")
        _ = try Self.httpURL(body["graph_url"], "graph_url")
        // The secret that signs callbacks is write-only: given by the caller, or generated and shown once.
        var secret: String?
        var generated = false
        if let value = body["secret"], value != .null {
            guard case .string(let s) = value, (16...256).contains(s.unicodeScalars.count) else {
                throw Problem(.badRequest, "secret must be text of 16 to 256 characters")
            }
            secret = s
        }
        if body["kind"] == "whatsapp" { return try await createWhatsApp(body, name: name, caller: caller) }
        if secret == nil, callback != nil {
            secret = "whsec_" + APIKeys.random(32)
            generated = true
        }
        var record = SQLStore.ChannelRecord(id: "ch_" + APIKeys.random(16), tenant: caller.tenant, kind: "api", name: name,
                                            callbackURL: callback, createdAt: engine.now)
        if let secret {
            guard let secrets else {
                throw Problem(.unavailable, "this server has no FLOWLINE_SECRET_KEY, so it cannot store channel secrets")
            }
            record.sealedSecret = try secrets.seal(secret, context: record.secretContext)
        }
        try await store.insertChannel(record)
        try await store.audit(tenant: caller.tenant, actor: caller.keyID, action: "channel.create", subject: record.id, at: engine.now)
        var answer = Self.channel(record)
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
        return page.response("channels", items.map(Self.channel), total: total)
    }

    /// `{"from", "text", "id", "payload"?}`: 202 once the message is durably stored.
    @Sendable func inbound(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let id = try context.parameters.require("id")
        guard let channel = try await store.channel(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no channel \(id)") }
        guard channel.kind == "api" else {
            throw Problem(.conflict, "inbound is for api channels; a \(channel.kind) channel receives at its webhook_path")
        }
        let body = try await request.jsonObject(context: context)
        guard case .string(let from)? = body["from"], !from.isEmpty, from.count <= 128 else { throw Problem(.badRequest, "from is required") }
        guard case .string(let messageID)? = body["id"], !messageID.isEmpty, messageID.count <= 256 else {
            throw Problem(.badRequest, "id is required: the sender's message id, used to ignore repeats")
        }
        var text = ""
        if let t = body["text"] {
            guard case .string(let s) = t else { throw Problem(.badRequest, "text must be text") }
            text = s
        }
        var payload: String?
        if let p = body["payload"] {
            guard case .string(let s) = p, !s.isEmpty else { throw Problem(.badRequest, "payload must be text") }
            payload = s
        }
        guard body["text"] != nil || payload != nil else { throw Problem(.badRequest, "text or payload is required") }
        var name: String?
        if let n = body["name"] {
            guard case .string(let s) = n else { throw Problem(.badRequest, "name must be text") }
            name = s
        }
        let result = try await engine.ingest(Inbound(
            tenant: caller.tenant, channel: channel.id, channelKind: channel.kind, contact: from, contactName: name, providerID: messageID,
            message: InboundMessage(text: text, payload: payload, kind: payload == nil ? "text" : "button")))
        switch result {
        case .accepted(let conversation, let started):
            context.logger.info("inbound message stored", metadata: ["conversation": "\(conversation)", "started": "\(started)"])
            return json(["status": started ? "started" : "accepted", "conversation": .string(conversation)], status: .accepted)
        case .duplicate:
            return json(["status": "duplicate"], status: .accepted)
        case .unrouted:
            return json(["status": "unrouted", "detail": "no open conversation and no published flow's trigger matched"], status: .accepted)
        }
    }
}

extension SQLStore.ChannelRecord {
    /// The channel's secret, opened; nil when it has none. Throws `EngineError(.secret)` (503 in the API) when the
    /// server has no key or its key does not open the secret.
    func openSecret(_ box: SecretBox?) throws -> String? {
        guard let sealedSecret else { return nil }
        guard let box else { throw EngineError(.secret, "the channel's secret needs FLOWLINE_SECRET_KEY") }
        return try box.open(sealedSecret, context: secretContext)
    }

    /// A WhatsApp channel's credentials (`verify_token`, `app_secret`, `access_token`), sealed together as JSON.
    func credentials(_ box: SecretBox?) throws -> Value {
        guard let text = try openSecret(box), let credentials = Value(json: text) else {
            throw EngineError(.secret, "the channel's credentials cannot be read")
        }
        return credentials
    }
}
