import Crypto
import FlowEngine
import FlowVM
import Foundation

/// Stripe's webhooks, as pure functions: the `Stripe-Signature` check and the events that resume a flow.
public enum StripeWebhook {
    /// Whether `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` signs these exact bytes: any `v1` equal (in
    /// constant time) to HMAC-SHA256(secret, "t.payload"), with `t` within `tolerance` seconds of `now`. Stripe sends
    /// several `v1` while a secret is being rolled.
    public static func isSigned(_ payload: [UInt8], header: String?, secret: String, now: Int64, tolerance: Int64 = 300) -> Bool {
        guard let header, !secret.isEmpty else { return false }
        var time: Int64?
        var signatures: [[UInt8]] = []
        for part in header.split(separator: ",") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { time = Int64(pair[1]) }
            if pair[0] == "v1" { signatures.append(Array(pair[1].lowercased().utf8)) }
        }
        guard let time, abs(now - time) <= tolerance, !signatures.isEmpty else { return false }
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(time).".utf8) + payload, using: SymmetricKey(data: Data(secret.utf8)))
        let expected = Array(mac.map { String(format: "%02x", $0) }.joined().utf8)
        // Every candidate is compared, so the time taken does not say which one matched.
        var matched = false
        for s in signatures where SecretBox.constantTimeEqual(s, expected) { matched = true }
        return matched
    }

    /// The header Stripe would send for `payload` at `time`: for tests and for our own fakes.
    public static func signature(_ payload: [UInt8], secret: String, time: Int64) -> String {
        HTTPWebhookConnector.signature(body: payload, secret: secret, time: time)
    }

    /// What a Stripe event means for flows.
    public struct Event: Sendable, Hashable {
        /// `evt_…`: the de-duplication key.
        public var id: String
        public var type: String
        /// The flow event to deliver (`stripe.paid`, `stripe.failed`, `stripe.expired`), nil when the event does not
        /// resume anything (a session completed but not yet paid, a type we do not handle).
        public var name: String?
        /// Correlation keys a conversation may wait on, most specific first: the session or PaymentIntent id, the
        /// Payment Link id, the conversation id.
        public var keys: [String]
        /// What `save:` receives.
        public var payload: Value
    }

    /// Parses an event (`{id, type, data: {object}}`); throws on anything that is not one.
    public static func parse(_ body: [UInt8]) throws -> Event {
        guard let event = Value(json: String(decoding: body, as: UTF8.self)), case .string(let id) = event["id"],
              case .string(let type) = event["type"], case .map = event["data"]["object"] else {
            throw ConnectorError(code: "malformed", message: "the body is not a Stripe event", retryable: false)
        }
        let object = event["data"]["object"]
        let metadata = object["metadata"]
        var name: String?
        var keys: [String] = []
        var payload: [String: Value] = [
            "event": .string(id), "type": .string(type), "id": object["id"], "currency": object["currency"],
            "metadata": metadata == .null ? [:] : metadata,
        ]
        switch type {
        case "checkout.session.completed", "checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed",
             "checkout.session.expired":
            let paid = ["paid", "no_payment_required"].contains(object["payment_status"].text)
            switch type {
            case "checkout.session.completed": name = paid ? "stripe.paid" : nil  // async methods settle later
            case "checkout.session.async_payment_succeeded": name = "stripe.paid"
            case "checkout.session.async_payment_failed": name = "stripe.failed"
            default: name = "stripe.expired"
            }
            keys = [object["id"].nonEmptyText, object["payment_link"].nonEmptyText, metadata["flowline_conversation"].nonEmptyText]
                .compactMap { $0 }
            payload["amount"] = object["amount_total"]
            payload["status"] = object["payment_status"]
            payload["payment_intent"] = object["payment_intent"]
            payload["email"] = object["customer_details"]["email"] != .null ? object["customer_details"]["email"] : object["customer_email"]
        case "payment_intent.succeeded", "payment_intent.payment_failed":
            name = type == "payment_intent.succeeded" ? "stripe.paid" : "stripe.failed"
            keys = [object["id"].nonEmptyText].compactMap { $0 }
            // A Checkout's PaymentIntent reaches its conversation through the session's own event; only a
            // PaymentIntent made elsewhere for this conversation is delivered by conversation id.
            if metadata["flowline_checkout"] == .null, let conversation = metadata["flowline_conversation"].nonEmptyText {
                keys.append(conversation)
            }
            payload["amount"] = object["amount"]
            payload["status"] = object["status"]
            payload["payment_intent"] = object["id"]
            payload["email"] = object["receipt_email"]
            if case .string(let code) = object["last_payment_error"]["code"] { payload["failure"] = .string(code) }
        default:
            break
        }
        return Event(id: id, type: type, name: name, keys: keys, payload: .map(payload))
    }
}
