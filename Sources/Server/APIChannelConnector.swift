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

    /// A WhatsApp conversation's message, through the Cloud API with the channel's sealed access token.
    private func sendWhatsApp(_ channel: SQLStore.ChannelRecord, _ parameters: Value, _ context: ConnectorContext) async throws -> Value {
        let credentials: Value
        do { credentials = try channel.credentials(secrets) } catch {
            throw ConnectorError(code: "secret", message: "\(error)", retryable: true)
        }
        guard case .string(let token) = credentials["access_token"], !token.isEmpty else {
            throw ConnectorError(code: "no_access_token", message: "the WhatsApp channel has no access_token: it can receive but not send",
                                 retryable: false)
        }
        var graph: String?
        if case .string(let url) = channel.config["graph_url"] { graph = url }
        let api = WhatsAppCloudAPI(phoneNumberID: channel.config["phone_number_id"].text, accessToken: token, graphURL: graph)
        return try await api.send(to: parameters["contact"].text, message: parameters["message"], context: context)
    }
}
