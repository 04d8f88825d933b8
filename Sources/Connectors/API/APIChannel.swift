import FlowEngine
import FlowVM

/// The `api` channel kind: Flowline's own channel, for platforms that carry the messages themselves. Contacts' messages
/// come in through `POST /v1/channels/{id}/inbound` (with an API key); every message a flow sends is in the
/// conversation's history (`GET /v1/conversations/{id}/messages`) and, when the channel has a `callback_url`, also
/// POSTed there.
///
/// The callback carries `Idempotency-Key` (stable across retries, so the receiver can drop repeats) and, when the
/// channel has a signing secret, `Flowline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>` (for a
/// day after `POST /v1/channels/{id}/rotate`, a second `v1` by the secret it replaced).
/// 2xx completes the delivery; 408, 425, 429 and 5xx, timeouts (10 s) and refused connections are retried
/// (honouring `Retry-After`); other statuses, redirects included, are permanent failures (`callback_<status>`).
public struct APIChannel: ChannelDriver {
    public init() {}

    public let kind = "api"
    public let summary = "Flowline's own channel: messages in through the API, out to a signed callback"
    public let fields = [ChannelField("callback_url", .url, summary: "where each message a flow sends is POSTed, signed")]
    public let carriesConversations = true

    public func send(_ parameters: Value, account: ChannelAccount, context: ConnectorContext, store: any ChannelStore) async throws -> Value {
        guard let url = account.callbackURL else { return ["stored": true] }
        let body: Value = [
            "id": .string(context.idempotencyKey), "conversation": .string(context.conversation), "channel": .string(account.id),
            "contact": parameters["contact"], "message": parameters["message"], "text": parameters["message"]["text"],
        ]
        // A callback is a signed webhook POST: the same request, signature and retry policy as `webhook:`.
        do {
            let answer = try await HTTPWebhookConnector(signingSecret: account.signingSecret, retiringSecret: account.retiringSigningSecret).perform(
                action: "http.request", parameters: ["url": .string(url), "method": "POST", "body": body, "timeout": "10s"], context: context)
            return ["stored": true, "callback_status": answer["status"]]
        } catch var e as ConnectorError {
            if e.code.hasPrefix("http_") { e.code = "callback_" + e.code.dropFirst("http_".count) }
            throw e
        }
    }
}
