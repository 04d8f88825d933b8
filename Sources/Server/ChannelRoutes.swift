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
        group.patch("channels/{id}", use: update)
        group.post("channels/{id}/rotate", use: rotate)
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
        if let until = c.previousSecretUntil, until > engine.now { v["previous_secret_signs_until"] = .string(until.iso8601) }
        return .map(v)
    }

    /// How long a rotated-out signing secret still signs beside the new one: a day, as Stripe gives when it rolls.
    static let rotationOverlapSeconds: Int64 = 24 * 3600

    /// The channel the path names, or 404.
    private func existing(_ context: FlowlineRequestContext, _ caller: Caller) async throws -> ChannelRecord {
        let id = try context.parameters.require("id")
        guard let record = try await store.channel(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no channel \(id)") }
        return record
    }

    /// Stores an edit made from `read`; 409 when the channel changed meanwhile (the edit was made from what it replaced).
    private func write(_ record: ChannelRecord, over read: ChannelRecord) async throws {
        guard try await store.updateChannel(record, over: read) else {
            guard try await store.channel(id: record.id, tenant: record.tenant) != nil else { throw Problem(.notFound, "no channel \(record.id)") }
            throw Problem(.conflict, "the channel changed while this edit was made; read it again and repeat the edit")
        }
    }

    /// A signing secret Flowline makes for an `api` channel.
    static func newSigningSecret() -> String { "whsec_" + APIKeys.random(32) }

    /// A signing secret a caller gives (`secret`): text of 16 to 256 characters.
    static func givenSigningSecret(_ value: Value) throws -> String {
        guard case .string(let s) = value, (16...256).contains(s.unicodeScalars.count) else {
            throw Problem(.badRequest, "secret must be text of 16 to 256 characters")
        }
        return s
    }

    /// The channel as answered, with a generated secret shown this once.
    func channel(_ record: ChannelRecord, showing secret: String?) -> Value {
        guard let secret, case .map(var m) = channel(record) else { return channel(record) }
        m["signing_secret"] = .string(secret)
        return .map(m)
    }

    private func seal(_ secret: String, _ record: ChannelRecord) throws -> String {
        guard let secrets else { throw Problem(.unavailable, "this server has no FLOWLINE_SECRET_KEY, so it cannot store channel secrets") }
        return try secrets.seal(secret, context: record.secretContext)
    }

    /// `PATCH /v1/channels/{id}`: a new name, settings, or secrets. Only the fields named change; a secret named is
    /// replaced (when the provider issues a new one: a WhatsApp app secret reset, a Stripe key rolled) and the
    /// others are kept; `null` removes a field that is not required. The kind stays.
    @Sendable func update(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "configuring channels needs an admin")
        let read = try await existing(context, caller)
        var record = read
        guard let kind = channels[record.kind] else { throw Problem(.conflict, "no driver handles \(record.kind) channels in this server") }
        let body = try await request.jsonObject(context: context)
        let generatesSecret = !kind.fields.contains(where: \.isSecret)
        let known = Set(kind.fields.map(\.name) + ["name"] + (generatesSecret ? ["secret"] : []))
        // A field some other kind has is a well-formed request that this channel's kind rules out: a conflict with
        // the channel as it is (409), not a malformed body (400).
        if let stray = body.keys.sorted().first(where: { !known.contains($0) }) {
            if stray == "kind" { throw Problem(.badRequest, "a channel's kind does not change; create another channel") }
            let elsewhere = channels.fieldsByName[stray] != nil || stray == "secret"
            throw Problem(elsewhere ? .conflict : .badRequest, "\(stray) is not a field of a \(record.kind) channel")
        }
        guard !body.isEmpty else { throw Problem(.badRequest, "name the fields to change") }
        if body["name"] != nil { record.name = try BodyText.identifier(body, "name", max: 100) }
        for field in kind.fields {
            guard let value = body[field.name] else { continue }
            if value == .null {
                if field.required { throw Problem(.conflict, "\(field.name) is required for a \(record.kind) channel: it cannot be removed") }
            } else if let problem = field.problem(with: value) {
                throw Problem(.badRequest, problem)
            }
        }
        var answerSecret: String?
        if generatesSecret {
            // `api`: the callback URL and the one secret that signs what is sent there.
            if let url = body["callback_url"] { record.callbackURL = url == .null ? nil : url.text }
            if let value = body["secret"] {
                if value == .null {
                    record.sealedSecret = nil
                } else {
                    record.sealedSecret = try seal(Self.givenSigningSecret(value), record)
                }
                record.previousSealedSecret = nil
                record.previousSecretUntil = nil
            } else if record.sealedSecret == nil, record.callbackURL != nil {
                let generated = Self.newSigningSecret()
                record.sealedSecret = try seal(generated, record)
                answerSecret = generated
            }
        } else {
            var settings: [String: Value] = [:]
            if case .map(let config) = record.config { settings = config }
            var credentials: [String: Value] = [:]
            if record.sealedSecret != nil {
                guard let box = secrets else {
                    throw Problem(.unavailable, "this server has no FLOWLINE_SECRET_KEY, so it cannot open the channel's secrets")
                }
                do {
                    if case .map(let c) = try record.credentials(box) { credentials = c }
                } catch {
                    throw Problem(.unavailable, "the channel's secrets cannot be opened with this server's FLOWLINE_SECRET_KEY")
                }
            }
            for field in kind.fields {
                guard let value = body[field.name] else { continue }
                if field.isSecret { credentials[field.name] = value == .null ? nil : value } else { settings[field.name] = value == .null ? nil : value }
            }
            record.config = .map(settings)
            record.sealedSecret = credentials.isEmpty ? nil : try seal(Value.map(credentials).jsonText, record)
        }
        try await write(record, over: read)
        try await store.audit(context, caller, "channel.update", record.id, at: engine.now)
        return json(channel(record, showing: answerSecret))
    }

    /// `POST /v1/channels/{id}/rotate`: a new signing secret for a channel whose secret Flowline made (`api`), shown
    /// once. For a day the one it replaces signs beside it, so the receiver can switch without refusing a callback.
    /// A provider's channel (WhatsApp, Stripe) has the secrets its provider issues: those change with PATCH.
    @Sendable func rotate(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "configuring channels needs an admin")
        let read = try await existing(context, caller)
        var record = read
        guard let kind = channels[record.kind], !kind.fields.contains(where: \.isSecret) else {
            throw Problem(.conflict, "a \(record.kind) channel's secrets are issued by its provider: send the new ones with PATCH /v1/channels/\(record.id)")
        }
        guard record.callbackURL != nil else {
            throw Problem(.conflict, "the channel has no callback_url, so nothing is signed: set one with PATCH first")
        }
        let secret = Self.newSigningSecret()
        if let current = record.sealedSecret {
            record.previousSealedSecret = current
            record.previousSecretUntil = engine.now.adding(seconds: Self.rotationOverlapSeconds)
        }
        record.sealedSecret = try seal(secret, record)
        try await write(record, over: read)
        try await store.audit(context, caller, "channel.rotate", record.id, at: engine.now)
        return json(channel(record, showing: secret))
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
        if let value = body["secret"], value != .null { secret = try Self.givenSigningSecret(value) }
        var (sealed, config) = kind.split(body)
        var record = ChannelRecord(id: "ch_" + APIKeys.random(16), tenant: caller.tenant, kind: kind.kind, name: name,
                                            callbackURL: nil, createdAt: engine.now)
        // A kind without secret fields (`api`) may have one secret that signs what it sends: given, or generated and shown once.
        if !kind.fields.contains(where: \.isSecret) {
            record.callbackURL = config.removeValue(forKey: "callback_url")?.text
            record.config = .map(config)
            if secret == nil, record.callbackURL != nil {
                secret = Self.newSigningSecret()
                generated = true
            }
        } else {
            record.config = .map(config)
            // Several secrets (a WhatsApp number's three, a Stripe key and its webhook secret) are sealed together.
            secret = sealed.isEmpty ? nil : Value.map(sealed).jsonText
        }
        if let secret { record.sealedSecret = try seal(secret, record) }
        try await store.insertChannel(record)
        try await store.audit(context, caller, "channel.create", record.id, at: engine.now)
        return json(channel(record, showing: generated ? secret : nil), status: .created)
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
        case .optedOut:
            return try InboundAnswer(status: "opted_out", detail: "one of the tenant's opt-out words: the contact is opted out on this channel").response(status: .accepted)
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
