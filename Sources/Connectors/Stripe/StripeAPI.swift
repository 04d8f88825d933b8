import AsyncHTTPClient
import FlowEngine
import FlowVM
import Foundation
import NIOCore

/// `stripe.checkout` and `stripe.payment_link` against the Stripe API (`api.stripe.com`, or a test double).
///
/// Requests are form-encoded with the secret key as a bearer token and carry `Idempotency-Key` derived from the
/// outbox key, so a retry after a crash returns the same session instead of creating a second one. Every object
/// carries the conversation in `metadata` **and** `payment_intent_data[metadata]`: Stripe does not copy a
/// session's metadata to its PaymentIntent, and the webhook may report either.
///
/// Failures: 429, 409 and 5xx are retried, unless Stripe says `Stripe-Should-Retry: false`; everything else
/// (bad parameters, an invalid key, an idempotency-key reuse with other parameters) is permanent, with code
/// `stripe_<error.code or error.type>`. A failure Stripe *replays* (`Idempotent-Replayed: true`: a 500 saved under
/// the key by an earlier attempt) is permanent too: Stripe answers that key the same way for 24 hours, so retrying
/// it cannot help, and a new key could create a second session. Stripe's own message is not passed on: it may
/// quote the key.
public struct StripeAPI: Connector {
    public let apiURL: String
    private let secretKey: String
    private let successURL: String?
    private let cancelURL: String?

    /// - Parameters:
    ///   - apiURL: where the API is; Stripe's own when nil.
    ///   - successURL, cancelURL: the account's defaults, used when the flow names none.
    public init(secretKey: String, apiURL: String? = nil, successURL: String? = nil, cancelURL: String? = nil) {
        let url = apiURL ?? "https://api.stripe.com"
        self.apiURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.secretKey = secretKey
        self.successURL = successURL
        self.cancelURL = cancelURL
    }

    public var definitions: [ActionDefinition] { Self.actions }


    public func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        switch action {
        case "stripe.checkout": try await checkout(parameters, context)
        case "stripe.payment_link": try await paymentLink(parameters, context)
        default: throw ConnectorError(code: "unknown_action", message: "Stripe has no action \(action)", retryable: false)
        }
    }

    /// The metadata every object carries, so webhooks find their conversation.
    private func metadata(_ prefix: String, _ context: ConnectorContext, checkout: Bool) -> [(String, String)] {
        var fields = [("\(prefix)[flowline_conversation]", context.conversation), ("\(prefix)[flowline_tenant]", context.tenant)]
        if checkout { fields.append(("\(prefix)[flowline_checkout]", "1")) }
        return fields
    }

    private func checkout(_ p: Value, _ context: ConnectorContext) async throws -> Value {
        guard let success = p["success_url"].nonEmptyText ?? successURL else {
            throw ConnectorError(code: "stripe_success_url", message: "a Checkout Session needs success_url (in the flow or the Stripe channel)",
                                 retryable: false)
        }
        var form: [(String, String)] = [
            ("mode", "payment"),
            ("line_items[0][price_data][currency]", p["currency"].text.lowercased()),
            ("line_items[0][price_data][unit_amount]", Self.integer(p["amount"])),
            ("line_items[0][price_data][product_data][name]", p["description"].text),
            ("line_items[0][quantity]", p["quantity"] == .null ? "1" : Self.integer(p["quantity"])),
            ("success_url", success),
            ("client_reference_id", context.conversation),
        ]
        if let cancel = p["cancel_url"].nonEmptyText ?? cancelURL { form.append(("cancel_url", cancel)) }
        if let email = p["customer_email"].nonEmptyText { form.append(("customer_email", email)) }
        form += metadata("metadata", context, checkout: false)
        form += metadata("payment_intent_data[metadata]", context, checkout: true)
        let session = try await post("/v1/checkout/sessions", form, idempotencyKey: context.idempotencyKey, context)
        return ["id": session["id"], "url": session["url"]]
    }

    /// A Payment Link needs a Price: one is created first, under its own idempotency key.
    private func paymentLink(_ p: Value, _ context: ConnectorContext) async throws -> Value {
        let price = try await post("/v1/prices", [
            ("currency", p["currency"].text.lowercased()), ("unit_amount", Self.integer(p["amount"])),
            ("product_data[name]", p["description"].text),
        ], idempotencyKey: context.idempotencyKey + "-price", context)
        guard case .string(let priceID) = price["id"] else {
            throw ConnectorError(code: "stripe_response", message: "Stripe answered a price without an id", retryable: true)
        }
        var form = [("line_items[0][price]", priceID), ("line_items[0][quantity]", "1")]
        // A link's metadata is copied to the sessions it creates.
        form += metadata("metadata", context, checkout: false)
        form += metadata("payment_intent_data[metadata]", context, checkout: true)
        let link = try await post("/v1/payment_links", form, idempotencyKey: context.idempotencyKey + "-link", context)
        return ["id": link["id"], "url": link["url"]]
    }

    private static func integer(_ v: Value) -> String {
        if case .number(let n) = v, n == n.rounded(), abs(n) < 1e15 { return String(Int64(n)) }
        return v.text
    }

    /// `application/x-www-form-urlencoded` as Stripe reads it: brackets for nesting, everything else escaped.
    public static func formEncode(_ fields: [(String, String)]) -> String {
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        func escape(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: allowed) ?? "" }
        return fields.map { escape($0.0) + "=" + escape($0.1) }.joined(separator: "&")
    }

    private func post(_ path: String, _ form: [(String, String)], idempotencyKey: String, _ context: ConnectorContext) async throws -> Value {
        var request = HTTPClientRequest(url: apiURL + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(secretKey)")
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Idempotency-Key", value: idempotencyKey)
        request.headers.add(name: "User-Agent", value: "Flowline")
        request.body = .bytes(ByteBuffer(string: Self.formEncode(form)))
        let (response, bytes) = try await context.send(request, to: "Stripe")
        let status = Int(response.status.code)
        let answer = Value(json: String(buffer: bytes)) ?? .null
        if (200..<300).contains(status), case .string = answer["id"] { return answer }
        throw Self.failure(status: status, answer: answer, shouldRetry: response.headers.first(name: "Stripe-Should-Retry"),
                           retryAfter: HTTPWebhookConnector.retryAfter(response.headers.first(name: "Retry-After"), now: Date()),
                           replayed: response.headers.first(name: "Idempotent-Replayed") == "true")
    }

    /// A Stripe error answer as a connector failure. `Stripe-Should-Retry` overrides the status's default.
    public static func failure(status: Int, answer: Value, shouldRetry: String? = nil, retryAfter: Int64? = nil,
                               replayed: Bool = false) -> ConnectorError {
        let error = answer["error"]
        let what = error["code"].nonEmptyText ?? error["type"].nonEmptyText ?? "http_\(status)"
        var retryable = status == 429 || status == 409 || status >= 500
        if shouldRetry == "true" { retryable = true }
        if shouldRetry == "false" || replayed { retryable = false }
        return ConnectorError(code: "stripe_\(what)", message: "Stripe refused the request (\(status), \(what)\(replayed ? ", replayed" : ""))",
                              retryable: retryable, retryAfter: retryAfter)
    }
}

extension StripeAPI {
    /// The actions it performs, with their JSON Schemas.
    public static let actions: [ActionDefinition] = [
        ActionDefinition(
            name: "stripe.checkout",
            summary: "Create a Stripe Checkout Session; its url is the payment page",
            parameters: ActionSchema.object([
                "amount": ["type": "integer", "minimum": 1, "description": "in the currency's smallest unit (cents)"],
                "currency": ["type": "string", "minLength": 3, "maxLength": 3],
                "description": ActionSchema.nonEmpty,
                "customer_email": ActionSchema.string,
                "success_url": ActionSchema.string,
                "cancel_url": ActionSchema.string,
                "quantity": ["type": "integer", "minimum": 1],
            ], required: ["amount", "currency", "description"]),
            result: ActionSchema.urlResult
        ),
        ActionDefinition(
            name: "stripe.payment_link",
            summary: "Create a reusable Stripe Payment Link",
            parameters: ActionSchema.object([
                "amount": ["type": "integer", "minimum": 1],
                "currency": ["type": "string", "minLength": 3, "maxLength": 3],
                "description": ActionSchema.nonEmpty,
            ], required: ["amount", "currency", "description"]),
            result: ActionSchema.urlResult
        ),
    ]
}
