import Connectors
import FlowEngine
import FlowRuntime
import FlowStore
import FlowVM
import Hummingbird
import Logging

/// `/webhooks/...`: what providers post to. No API key: each request proves itself with the channel's secret
/// (WhatsApp's `X-Hub-Signature-256`, Stripe's `Stripe-Signature`), checked on the raw bytes before anything is parsed.
struct WebhookRoutes {
    let store: SQLStore
    let engine: Engine
    let secrets: SecretBox?

    func addRoutes(to router: Router<FlowlineRequestContext>) {
        router.get("webhooks/whatsapp/{id}", use: whatsAppVerify)
        router.post("webhooks/whatsapp/{id}", use: whatsAppReceive)
        router.post("webhooks/stripe/{id}", use: stripeReceive)
        router.post("webhooks/resume/{token}", use: resume)
    }

    /// A resume link (`ResumeLinks`): the posted JSON (or null for an empty body) resumes the one conversation
    /// waiting on this token, once. 404 once used, timed out or never valid, so a caller knows to stop retrying.
    @Sendable func resume(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let token = try context.parameters.require("token")
        let bytes = try await request.body.collect(upTo: context.maxUploadSize)
        var payload: Value = .null
        if bytes.readableBytes > 0 {
            guard let v = Value(json: String(buffer: bytes)) else { throw Problem(.badRequest, "the body must be JSON") }
            payload = v
        }
        guard let id = ResumeLinks.conversation(in: token), try await engine.resume(token: token, payload: payload) else {
            throw Problem(.notFound, "no such resume link: it was used already, has expired, or never existed")
        }
        context.logger.info("conversation resumed by link", metadata: ["conversation": "\(id)"])
        return json(["resumed": true, "conversation": .string(id)], status: .accepted)
    }

    /// The channel of `kind` named in the path and its opened secrets; 404 for anything else.
    private func channel(_ kind: String, _ context: FlowlineRequestContext) async throws -> (SQLStore.ChannelRecord, Value) {
        let id = try context.parameters.require("id")
        guard let channel = try await store.channel(id: id), channel.kind == kind else {
            throw Problem(.notFound, "no \(kind) channel \(id)")
        }
        return (channel, try channel.credentials(secrets))
    }

    /// A Stripe event: `Stripe-Signature` checked on the raw bytes (300 s tolerance) before anything is parsed; then
    /// the event resumes the conversation waiting on one of its keys (session, PaymentIntent, Payment Link or
    /// conversation id), at most once per `event.id`. Events that resume nothing are acknowledged, so Stripe stops
    /// sending them.
    @Sendable func stripeReceive(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (channel, opened) = try await self.channel("stripe", context)
        let body = Array(buffer: try await request.body.collect(upTo: context.maxUploadSize))
        guard StripeWebhook.isSigned(body, header: request.headers[.init("Stripe-Signature")!], secret: opened["webhook_secret"].text,
                                     now: engine.now.milliseconds / 1000) else {
            context.logger.warning("forged, unsigned or stale Stripe webhook refused", metadata: ["channel": "\(channel.id)"])
            throw Problem(.unauthorized, "the Stripe-Signature does not match this channel's webhook secret, or is older than 5 minutes")
        }
        let event: StripeWebhook.Event
        do { event = try StripeWebhook.parse(body) } catch { throw Problem(.badRequest, "the body is not a Stripe event") }
        var resumed: String?
        if let name = event.name {
            for key in event.keys {
                if try await engine.deliverEvent(tenant: channel.tenant, name: name, key: key, payload: event.payload,
                                                 providerID: "stripe:" + event.id) {
                    resumed = key
                    break
                }
            }
        }
        context.logger.info("Stripe event received", metadata: [
            "channel": "\(channel.id)", "event": "\(event.id)", "type": "\(event.type)", "resumed": "\(resumed != nil)",
        ])
        return json(["received": true, "event": .string(event.id), "resumed": .bool(resumed != nil)])
    }

    /// Queues a read receipt (blue ticks) for each message once it is safely stored, duplicates included (a repeated
    /// notification may be the one whose first copy was stored just before a crash). Each receipt is its own queue in
    /// the outbox, so a receipt that must wait (a rate limit) holds up neither replies nor other receipts.
    private func markRead(_ ids: [String], channel: SQLStore.ChannelRecord) async throws {
        let receipts = ids.map { id in
            SQLStore.FollowUp(key: "read:\(channel.id):\(id)", action: "channel.read", payload: ["channel": .string(channel.id), "message_id": .string(id)])
        }
        try await store.enqueue(receipts, tenant: channel.tenant, queue: { $0.key }, now: engine.now)
        if !receipts.isEmpty { engine.outboxChanged() }
    }

    /// Meta's subscription handshake: echo `hub.challenge` when `hub.verify_token` matches; 403 otherwise.
    @Sendable func whatsAppVerify(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (channel, opened) = try await self.channel("whatsapp", context)
        let q = request.uri.queryParameters
        guard let challenge = WhatsAppWebhook.challenge(
            mode: q["hub.mode"].map(String.init), token: q["hub.verify_token"].map(String.init),
            challenge: q["hub.challenge"].map(String.init), verifyToken: opened["verify_token"].text) else {
            context.logger.warning("WhatsApp verification refused", metadata: ["channel": "\(channel.id)"])
            throw Problem(.forbidden, "the verify token does not match")
        }
        return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: challenge)))
    }

    /// A notification: signature first, then every message for this number is stored (de-duplicated by its
    /// `wamid`) before answering 200.
    @Sendable func whatsAppReceive(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let (channel, opened) = try await self.channel("whatsapp", context)
        let body = Array(buffer: try await request.body.collect(upTo: context.maxUploadSize))
        guard WhatsAppWebhook.isSigned(body, header: request.headers[.init("X-Hub-Signature-256")!], appSecret: opened["app_secret"].text) else {
            context.logger.warning("forged or unsigned WhatsApp webhook refused", metadata: ["channel": "\(channel.id)"])
            throw Problem(.unauthorized, "the X-Hub-Signature-256 signature does not match this channel's app secret")
        }
        let notification: WhatsAppWebhook.Notification
        do {
            notification = try WhatsAppWebhook.parse(body)
        } catch {
            throw Problem(.badRequest, "the body is not a WhatsApp Business notification")
        }
        let number = channel.config["phone_number_id"].text
        var stored = 0, duplicates = 0, ignored = 0
        var read: [String] = []
        for m in notification.messages {
            guard m.phoneNumberID == number else {
                ignored += 1  // another business number of the same app
                continue
            }
            var data: [String: Value] = [:]
            if let media = m.mediaID { data["media_id"] = .string(media) }
            if let location = m.location { data["location"] = location }
            let result = try await engine.ingest(Inbound(
                tenant: channel.tenant, channel: channel.id, channelKind: "whatsapp", contact: m.contact, contactName: m.name,
                contactPhone: m.contact == m.waID ? nil : m.waID, providerID: m.id, message: InboundMessage(text: m.text, payload: m.payload, kind: m.kind, data: data.isEmpty ? .null : .map(data))))
            if case .duplicate = result { duplicates += 1 } else { stored += 1 }
            read.append(m.id)
            if case .accepted(let conversation, _) = result {
                context.logger.info("WhatsApp message stored", metadata: ["conversation": "\(conversation)", "channel": "\(channel.id)"])
            }
        }
        try await markRead(read, channel: channel)
        for status in notification.statuses where status.phoneNumberID == number {
            let code = status.errors.first.map { String($0.code) }
            // Accepted by the Graph, then refused with 131047 (the window had closed after all): the flow's template
            // goes out in its place, queued with the status change itself, so a crash cannot lose it.
            let late131047 = status.status == "failed" && code == "131047"
            let messageID = status.messageID
            let change = try await store.updateStatus(channel: channel.id, providerID: messageID, tenant: channel.tenant,
                                                      status: status.status, errorCode: code, at: engine.now) { change in
                guard late131047, case .string(let name) = change.fallback["name"], let conversation = change.conversation else { return nil }
                return SQLStore.FollowUp(key: "\(conversation):fallback:\(messageID)", action: "whatsapp.template", payload: [
                    "name": .string(name), "language": change.fallback["language"], "parameters": [change.fallback["text"]],
                ])
            }
            guard change.changed, status.status == "failed" else { continue }
            context.logger.warning("WhatsApp message failed after it was sent", metadata: [
                "channel": "\(channel.id)", "conversation": "\(change.conversation ?? "?")", "code": "\(code ?? "?")",
            ])
            if late131047 { engine.outboxChanged() }  // the template, when the flow names one, is queued
        }
        return json(["stored": .number(Double(stored)), "duplicates": .number(Double(duplicates)), "ignored": .number(Double(ignored)),
                     "statuses": .number(Double(notification.statuses.count))])
    }
}
