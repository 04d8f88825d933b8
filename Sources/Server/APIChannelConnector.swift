import Connectors
import FlowEngine
import FlowStore
import FlowVM

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

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard case .string(let channelID) = parameters["channel"],
              let channel = try await store.channel(id: channelID, tenant: context.tenant) else {
            throw ConnectorError(code: "no_channel", message: "the conversation's channel does not exist", retryable: false)
        }
        if channel.kind == "whatsapp" { return try await sendWhatsApp(channel, parameters, context) }
        guard let url = channel.callbackURL else { return ["stored": true] }
        let body: Value = [
            "id": .string(context.idempotencyKey), "conversation": .string(context.conversation), "channel": .string(channel.id),
            "contact": parameters["contact"], "message": parameters["message"], "text": parameters["message"]["text"],
        ]
        var secret: String?
        if let sealed = channel.sealedSecret {
            guard let secrets else {
                throw ConnectorError(code: "secret_key_missing", message: "the channel's signing secret needs FLOWLINE_SECRET_KEY", retryable: true)
            }
            do { secret = try secrets.open(sealed, context: channel.secretContext) } catch {
                throw ConnectorError(code: "secret", message: "\(error)", retryable: true)
            }
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

    /// A WhatsApp conversation's message, through the Cloud API with the channel's sealed access token.
    private func sendWhatsApp(_ channel: SQLStore.ChannelRecord, _ parameters: Value, _ context: ConnectorContext) async throws -> Value {
        guard let sealed = channel.sealedSecret, let secrets,
              let opened = try? Value(json: secrets.open(sealed, context: channel.secretContext)) ?? nil else {
            throw ConnectorError(code: "secret", message: "the channel's credentials cannot be opened (is FLOWLINE_SECRET_KEY set?)",
                                 retryable: true)
        }
        guard case .string(let token) = opened["access_token"], !token.isEmpty else {
            throw ConnectorError(code: "no_access_token", message: "the WhatsApp channel has no access_token: it can receive but not send",
                                 retryable: false)
        }
        var api = WhatsAppCloudAPI(phoneNumberID: channel.config["phone_number_id"].text, accessToken: token)
        if case .string(let graph) = channel.config["graph_url"] { api = WhatsAppCloudAPI(phoneNumberID: api.phoneNumberID, accessToken: token, graphURL: graph) }
        return try await api.send(to: parameters["contact"].text, message: parameters["message"], context: context)
    }
}
