import FlowEngine
import FlowVM

/// The `whatsapp` channel kind: a business number on the WhatsApp Cloud API.
///
/// - Webhooks: Meta's subscription handshake (`GET`, `hub.verify_token`) and notifications (`POST`, signed with
///   `X-Hub-Signature-256` on the raw bytes). Every message for this number is stored, de-duplicated by its `wamid`,
///   before answering 200, and gets a read receipt queued in the outbox; delivery statuses reach the conversation
///   that sent the message.
/// - Sends: through the Cloud API with the number's sealed access token. Outside the 24-hour customer-service
///   window (by our clock, or by the Graph's 131047, at once or in a later `failed` status) only a template may be
///   sent: the flow's `whatsapp_template` with the text as its parameter, or the send fails with
///   `whatsapp_window_closed`.
/// - Actions: `whatsapp.template` and `whatsapp.media`, to the conversation's contact.
public struct WhatsAppChannel: ChannelDriver {
    public init() {}

    public let kind = "whatsapp"
    public let summary = "A business number on the WhatsApp Cloud API"
    public let fields = [
        ChannelField("phone_number_id", .digits, required: true, summary: "the Cloud API's id of the business number"),
        ChannelField("verify_token", .secret(min: 8), required: true, summary: "what Meta's subscription handshake must present"),
        ChannelField("app_secret", .secret(min: 8), required: true, summary: "the app's secret, which signs notifications"),
        ChannelField("access_token", .secret(min: 8), summary: "a system user's token, to send; without it the channel only receives"),
        ChannelField("graph_url", .url, summary: "where the Graph API is, when not graph.facebook.com"),
    ]
    public let carriesConversations = true
    public let replyWindow: Int64? = 24 * 3600
    public let receivesWebhooks = true
    public let webhookMethods = ["GET", "POST"]
    public var actions: [ActionDefinition] { WhatsAppCloudAPI.actions }

    // MARK: Webhooks

    public func receive(_ request: WebhookRequest, account: ChannelAccount, inbox: any ChannelInbox) async throws -> WebhookResponse {
        // `webhookMethods`: the runtime answers 405 to any other method before calling here.
        guard request.method == "GET" else { return try await notification(request, account: account, inbox: inbox) }
        // Meta's subscription handshake: echo `hub.challenge` when `hub.verify_token` matches.
        guard let challenge = WhatsAppWebhook.challenge(mode: request.query["hub.mode"], token: request.query["hub.verify_token"],
                                                        challenge: request.query["hub.challenge"],
                                                        verifyToken: account.credentials["verify_token"].text) else {
            throw WebhookRefusal(403, "the verify token does not match")
        }
        return .text(challenge)
    }

    private func notification(_ request: WebhookRequest, account: ChannelAccount, inbox: any ChannelInbox) async throws -> WebhookResponse {
        guard WhatsAppWebhook.isSigned(request.body, header: request.headers["x-hub-signature-256"], appSecret: account.credentials["app_secret"].text) else {
            throw WebhookRefusal(401, "the X-Hub-Signature-256 signature does not match this channel's app secret")
        }
        let notification: WhatsAppWebhook.Notification
        do { notification = try WhatsAppWebhook.parse(request.body) } catch {
            throw WebhookRefusal(400, "the body is not a WhatsApp Business notification")
        }
        let number = account.config["phone_number_id"].text
        var stored = 0, duplicates = 0, ignored = 0
        var receipts: [QueuedAction] = []
        for m in notification.messages {
            guard m.phoneNumberID == number else {
                ignored += 1  // another business number of the same app
                continue
            }
            var data: [String: Value] = [:]
            if let media = m.mediaID { data["media_id"] = .string(media) }
            if let location = m.location { data["location"] = location }
            let outcome = try await inbox.receive(ReceivedMessage(
                contact: m.contact, contactName: m.name, contactPhone: m.contact == m.waID ? nil : m.waID, providerID: m.id,
                message: InboundMessage(text: m.text, payload: m.payload, kind: m.kind, data: data.isEmpty ? .null : .map(data))))
            if case .duplicate = outcome { duplicates += 1 } else { stored += 1 }
            // A receipt for duplicates too: a repeated notification may be the one whose first copy was stored just before a crash.
            receipts.append(QueuedAction(key: "read:\(account.id):\(m.id)", action: "channel.read",
                                         payload: ["channel": .string(account.id), "message_id": .string(m.id)]))
        }
        try await inbox.queue(receipts)
        for status in notification.statuses where status.phoneNumberID == number {
            let code = status.errors.first.map { String($0.code) }
            // Accepted by the Graph, then refused with 131047 (the window had closed after all): the flow's template goes
            // out in its place, queued with the status change itself, so a crash cannot lose it.
            let late131047 = status.status == "failed" && code == "131047"
            let messageID = status.messageID
            _ = try await inbox.updateStatus(providerID: messageID, status: status.status, errorCode: code) { change in
                guard late131047, case .string(let name) = change.fallback["name"], let conversation = change.conversation else { return nil }
                return QueuedAction(key: "\(conversation):fallback:\(messageID)", action: "whatsapp.template", payload: [
                    "name": .string(name), "language": change.fallback["language"], "parameters": [change.fallback["text"]],
                ])
            }
        }
        return .json(["stored": .number(Double(stored)), "duplicates": .number(Double(duplicates)), "ignored": .number(Double(ignored)),
                      "statuses": .number(Double(notification.statuses.count))])
    }

    // MARK: Sends

    /// A conversation's message. The template for a closed window is the flow's (`whatsapp_template` of the version
    /// that sent it), for the flow's messages and an agent's alike.
    public func send(_ parameters: Value, account: ChannelAccount, context: ConnectorContext, store: any ChannelStore) async throws -> Value {
        let api = try Self.api(account)
        let to = try await Self.recipient(parameters["contact"].text, store: store)
        var fallback = parameters["fallback_template"]  // queued by an older version, which copied it into each send
        if fallback == .null { fallback = try await store.flowSetting("whatsapp_template", program: parameters["program"].nonEmptyText) }
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
        let answer: Value
        // A contact who never wrote (a conversation the business started) has no window open at all.
        let last = try await store.lastInboundAt()
        if last.map({ $0.adding(seconds: replyWindow ?? 0) <= store.now }) ?? true {
            answer = try await sendTemplate()
        } else {
            do {
                answer = try await api.send(to: to, message: parameters["message"], context: context)
            } catch let e as ConnectorError where e.code == "whatsapp_131047" {
                answer = try await sendTemplate()
            }
        }
        // A plain message may still be refused later (a 131047 in a `failed` status): keep the template to send then.
        var kept: Value = .null
        if answer["template"] == .null, case .map(var template) = fallback {
            template["text"] = parameters["message"]["text"]
            kept = .map(template)
        }
        if case .string(let id) = answer["id"] { try await store.recordSent(providerID: id, fallback: kept) }
        return answer
    }

    public func markRead(_ messageID: String, account: ChannelAccount, context: ConnectorContext) async throws -> Bool {
        try await Self.api(account).markRead(messageID, context: context)
        return true
    }

    public func perform(action: String, parameters p: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        let api = try Self.api(account)
        let to = try await Self.recipient(store.contact, store: store)
        let body: Value
        switch action {
        case "whatsapp.template":
            var parameters: [String] = []
            if case .list(let list) = p["parameters"] { parameters = list.map(\.text) }
            body = WhatsAppCloudAPI.templateBody(to: to, name: p["name"].text, language: p["language"].text, parameters: parameters)
        case "whatsapp.media":
            guard p["id"] != .null || p["link"] != .null else {
                throw ConnectorError(code: "whatsapp_media", message: "whatsapp.media needs the media's id or link", retryable: false)
            }
            body = WhatsAppCloudAPI.mediaBody(to: to, type: p["type"].text, id: p["id"].nonEmptyText, link: p["link"].nonEmptyText,
                                              caption: p["caption"].nonEmptyText, filename: p["filename"].nonEmptyText)
        default:
            throw ConnectorError(code: "unknown_action", message: "whatsapp has no action \(action)", retryable: false)
        }
        let answer = try await api.post(body, context: context)
        if case .string(let id) = answer["id"] { try await store.recordSent(providerID: id, fallback: .null) }
        return answer
    }

    /// How to address `contact`: by phone, or by business-scoped user id and the phone stored for it.
    static func recipient(_ contact: String, store: any ChannelStore) async throws -> WhatsAppRecipient {
        guard WhatsAppRecipient.isUserID(contact) else { return WhatsAppRecipient(contact: contact) }
        return WhatsAppRecipient(contact: contact, phone: try await store.contactPhone(contact))
    }

    /// The Cloud API of a channel, with its access token.
    static func api(_ account: ChannelAccount) throws -> WhatsAppCloudAPI {
        guard case .string(let token) = account.credentials["access_token"], !token.isEmpty else {
            throw ConnectorError(code: "no_access_token", message: "the WhatsApp channel has no access_token: it can receive but not send",
                                 retryable: false)
        }
        return WhatsAppCloudAPI(phoneNumberID: account.config["phone_number_id"].text, accessToken: token,
                                graphURL: account.config["graph_url"].nonEmptyText)
    }
}
