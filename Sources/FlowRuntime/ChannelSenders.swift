import Connectors
import FlowEngine
import FlowStore
import FlowVM
import Synchronization

/// Delivers `channel.send` by the channel's kind: WhatsApp through the Cloud API (`WhatsAppCloudAPI`); `api`
/// channels as below. Every message is already in the conversation's history
/// (`GET /v1/conversations/{id}/messages`); when the channel has a `callback_url`, it is also POSTed there.
///
/// The request carries `Idempotency-Key` (stable across retries, so the receiver can drop repeats) and, when the
/// channel has a signing secret, `Flowline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
/// 2xx completes the delivery; 408, 425, 429 and 5xx, timeouts (10 s) and refused connections are retried
/// (honouring `Retry-After`); other statuses, redirects included, are permanent failures (`callback_<status>`).
struct APIChannelConnector: Connector {
    let definitions = [ActionDefinition.channelSend]
    let store: SQLStore
    let secrets: SecretBox?
    /// The engine's clock: the 24-hour window is measured on it.
    let now: @Sendable () -> Timestamp
    let templates = TemplateCache()

    /// Each program version's `whatsapp_template` (or null), by program hash.
    final class TemplateCache: Sendable {
        private let entries = Mutex<[String: Value]>([:])
        func known(_ hash: String) -> Value? { entries.withLock { $0[hash] } }
        func keep(_ template: Value, for hash: String) {
            entries.withLock { e in
                if e.count >= 10_000 { e.removeAll(keepingCapacity: true) }
                e[hash] = template
            }
        }
    }

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard case .string(let channelID) = parameters["channel"],
              let channel = try await store.channel(id: channelID, tenant: context.tenant) else {
            throw ConnectorError(code: "no_channel", message: "the conversation's channel does not exist", retryable: false)
        }
        if channel.kind == "whatsapp" {
            var parameters = parameters
            if parameters["fallback_template"] == .null, case .map(var p) = parameters {
                // What goes out once the window has closed is the flow's `whatsapp_template`, for the flow's messages and
                // an agent's alike: the version the conversation runs says.
                p["fallback_template"] = try await flowTemplate(program: parameters["program"].nonEmptyText, context)
                parameters = .map(p)
            }
            let answer = try await sendWhatsApp(channel, parameters, context)
            // A plain message may still be refused later (a 131047 in a `failed` status): keep the template to send then.
            var fallback: Value = .null
            if answer["template"] == .null, case .map(var template) = parameters["fallback_template"] {
                template["text"] = parameters["message"]["text"]
                fallback = .map(template)
            }
            try await WhatsAppSender.track(answer, channel: channel, store: store, context: context, at: now(), fallback: fallback)
            return answer
        }
        guard let url = channel.callbackURL else { return ["stored": true] }
        let body: Value = [
            "id": .string(context.idempotencyKey), "conversation": .string(context.conversation), "channel": .string(channel.id),
            "contact": parameters["contact"], "message": parameters["message"], "text": parameters["message"]["text"],
        ]
        let secret: String?
        do { secret = try channel.openSecret(secrets) } catch {
            throw ConnectorError(code: "secret", message: "\(error)", retryable: true)
        }
        // A callback is a signed webhook POST: the same request, signature and retry policy as `webhook:`.
        do {
            let answer = try await HTTPWebhookConnector(signingSecret: secret).perform(
                action: "http.request", parameters: ["url": .string(url), "method": "POST", "body": body, "timeout": "10s"], context: context)
            return ["stored": true, "callback_status": answer["status"]]
        } catch var e as ConnectorError {
            if e.code.hasPrefix("http_") { e.code = "callback_" + e.code.dropFirst("http_".count) }
            throw e
        }
    }

    /// The `whatsapp_template` of the flow version that sent the message (`program`, in every send since it was added;
    /// the conversation's for an older queued one), or null. A version never changes, so what each declares is kept
    /// (a few hundred bytes per version) and a send reads nothing once its version is known.
    private func flowTemplate(program: String?, _ context: ConnectorContext) async throws -> Value {
        var hash = program
        if hash == nil { hash = try await store.conversation(id: context.conversation, tenant: context.tenant)?.programHash }
        guard let hash else { return .null }
        if let known = templates.known(hash) { return known }
        guard let program = try await store.program(hash: hash) else { return .null }
        let template: Value = if case .map = program.metadata["whatsapp_template"] { program.metadata["whatsapp_template"] } else { .null }
        templates.keep(template, for: hash)
        return template
    }

    /// A WhatsApp conversation's message, through the Cloud API with the channel's sealed access token. Outside the
    /// 24-hour customer-service window (by our clock, or by the Graph's 131047) only a template may be sent: the
    /// flow's `whatsapp_template`, with the message text as its parameter, or the send fails with the reason.
    private func sendWhatsApp(_ channel: SQLStore.ChannelRecord, _ parameters: Value, _ context: ConnectorContext) async throws -> Value {
        let api = try WhatsAppSender.api(channel, secrets)
        let to = try await WhatsAppSender.recipient(parameters["contact"].text, channel: channel, store: store)
        let fallback = parameters["fallback_template"]
        func sendTemplate() async throws -> Value {
            guard case .string(let name) = fallback["name"], case .string(let language) = fallback["language"] else {
                throw ConnectorError(code: "whatsapp_window_closed",
                                     message: "the 24-hour customer-service window is closed and the flow names no whatsapp_template to send instead",
                                     retryable: false)
            }
            let answer = try await api.post(WhatsAppCloudAPI.templateBody(to: to, name: name, language: language,
                                                                          parameters: [parameters["message"]["text"].text]), context: context)
            return ["id": answer["id"], "template": .string(name)]
        }
        let last = try await store.lastInboundAt(conversation: context.conversation, tenant: context.tenant)
        if let last, last.adding(seconds: 24 * 3600) <= now() { return try await sendTemplate() }
        do {
            return try await api.send(to: to, message: parameters["message"], context: context)
        } catch let e as ConnectorError where e.code == "whatsapp_131047" {
            return try await sendTemplate()
        }
    }
}

/// `channel.read`: a read receipt for an inbound message, through the channel it came on (WhatsApp's blue ticks;
/// channels without receipts have nothing to do).
struct ReadReceipts: Connector {
    let definitions = [ActionDefinition.channelRead]
    let store: SQLStore
    let secrets: SecretBox?

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard let channel = try await store.channel(id: parameters["channel"].text, tenant: context.tenant) else {
            throw ConnectorError(code: "no_channel", message: "the message's channel does not exist", retryable: false)
        }
        guard channel.kind == "whatsapp" else { return ["read": false] }
        try await WhatsAppSender.api(channel, secrets).markRead(parameters["message_id"].text, context: context)
        return ["read": true]
    }
}

/// `whatsapp.template` and `whatsapp.media`: sends to the contact of the conversation running the flow, on its
/// WhatsApp channel.
struct WhatsAppSender: Connector {
    let definitions = BuiltinActions.all.filter { ["whatsapp.template", "whatsapp.media"].contains($0.name) }
    let store: SQLStore
    let secrets: SecretBox?
    let now: @Sendable () -> Timestamp

    /// Remembers which conversation a sent message belongs to, so its delivery statuses can be shown there.
    static func track(_ answer: Value, channel: SQLStore.ChannelRecord, store: SQLStore, context: ConnectorContext, at: Timestamp,
                      fallback: Value = .null) async throws {
        guard case .string(let id) = answer["id"] else { return }
        try await store.recordSent(channel: channel.id, providerID: id, tenant: context.tenant, conversation: context.conversation, at: at,
                                   fallback: fallback)
    }

    /// How to address `contact` on `channel`: by phone, or by business-scoped user id and the phone stored for it.
    static func recipient(_ contact: String, channel: SQLStore.ChannelRecord, store: SQLStore) async throws -> WhatsAppRecipient {
        guard WhatsAppRecipient.isUserID(contact) else { return WhatsAppRecipient(contact: contact) }
        let phone = try await store.contactPhone(tenant: channel.tenant, channel: channel.id, contact: contact)
        return WhatsAppRecipient(contact: contact, phone: phone)
    }

    /// The Cloud API of a WhatsApp channel, with its opened access token.
    static func api(_ channel: SQLStore.ChannelRecord, _ secrets: SecretBox?) throws -> WhatsAppCloudAPI {
        let credentials: Value
        do { credentials = try channel.credentials(secrets) } catch {
            throw ConnectorError(code: "secret", message: "\(error)", retryable: true)
        }
        guard case .string(let token) = credentials["access_token"], !token.isEmpty else {
            throw ConnectorError(code: "no_access_token", message: "the WhatsApp channel has no access_token: it can receive but not send",
                                 retryable: false)
        }
        return WhatsAppCloudAPI(phoneNumberID: channel.config["phone_number_id"].text, accessToken: token, graphURL: channel.config["graph_url"].nonEmptyText)
    }

    func perform(action: String, parameters p: Value, context: ConnectorContext) async throws -> Value {
        guard let conversation = try await store.conversation(id: context.conversation, tenant: context.tenant),
              let channel = try await store.channel(id: conversation.channel, tenant: context.tenant), channel.kind == "whatsapp" else {
            throw ConnectorError(code: "not_whatsapp", message: "\(action) needs a conversation on a WhatsApp channel", retryable: false)
        }
        let api = try Self.api(channel, secrets)
        let to = try await Self.recipient(conversation.contact, channel: channel, store: store)
        let body: Value
        if action == "whatsapp.template" {
            var parameters: [String] = []
            if case .list(let list) = p["parameters"] { parameters = list.map(\.text) }
            body = WhatsAppCloudAPI.templateBody(to: to, name: p["name"].text, language: p["language"].text, parameters: parameters)
        } else {
            guard p["id"] != .null || p["link"] != .null else {
                throw ConnectorError(code: "whatsapp_media", message: "whatsapp.media needs the media's id or link", retryable: false)
            }
            body = WhatsAppCloudAPI.mediaBody(to: to, type: p["type"].text, id: p["id"].nonEmptyText, link: p["link"].nonEmptyText,
                                              caption: p["caption"].nonEmptyText, filename: p["filename"].nonEmptyText)
        }
        let answer = try await api.post(body, context: context)
        try await Self.track(answer, channel: channel, store: store, context: context, at: now())
        return answer
    }
}
