import FlowEngine
import FlowVM

/// The `stripe` channel kind: a tenant's Stripe account. Its actions (`stripe.checkout`, `stripe.payment_link`) run
/// with the account's secret key; its webhook takes Stripe's events, `Stripe-Signature` checked on the raw bytes
/// (300 s tolerance) before anything is parsed. An event resumes the conversation waiting on one of its keys
/// (session, PaymentIntent, Payment Link or conversation id), at most once per `event.id`; events that resume
/// nothing are acknowledged, so Stripe stops sending them.
public struct StripeChannel: ChannelDriver {
    public init() {}

    public let kind = "stripe"
    public let summary = "A Stripe account, for payments"
    public let fields = [
        ChannelField("secret_key", .secret(min: 8), required: true, summary: "the account's secret (sk_…) or restricted (rk_…) key"),
        ChannelField("webhook_secret", .secret(min: 8), required: true, summary: "the webhook endpoint's signing secret (whsec_…)"),
        ChannelField("api_url", .url, summary: "where the Stripe API is, when not api.stripe.com"),
        ChannelField("success_url", .url, summary: "where Checkout sends a payer by default once paid"),
        ChannelField("cancel_url", .url, summary: "where Checkout sends a payer by default who gives up"),
    ]
    public let receivesWebhooks = true
    public var actions: [ActionDefinition] { StripeAPI.actions }

    public func receive(_ request: WebhookRequest, account: ChannelAccount, inbox: any ChannelInbox) async throws -> WebhookResponse {
        guard StripeWebhook.isSigned(request.body, header: request.headers["stripe-signature"], secret: account.credentials["webhook_secret"].text,
                                     now: inbox.now.milliseconds / 1000) else {
            throw WebhookRefusal(401, "the Stripe-Signature does not match this channel's webhook secret, or is older than 5 minutes")
        }
        let event: StripeWebhook.Event
        do { event = try StripeWebhook.parse(request.body) } catch { throw WebhookRefusal(400, "the body is not a Stripe event") }
        var resumed = false
        if let name = event.name {
            for key in event.keys where try await inbox.resume(event: name, key: key, payload: event.payload, providerID: "stripe:" + event.id) {
                resumed = true
                break
            }
        }
        return .json(["received": true, "event": .string(event.id), "resumed": .bool(resumed)])
    }

    public func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        try await StripeAPI(secretKey: account.credentials["secret_key"].text, apiURL: account.config["api_url"].nonEmptyText,
                            successURL: account.config["success_url"].nonEmptyText, cancelURL: account.config["cancel_url"].nonEmptyText)
            .perform(action: action, parameters: parameters, context: context)
    }
}
