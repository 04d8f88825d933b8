@testable import Connectors
import FlowEngine
import FlowVM
import FlowlineTestKit
import Testing

/// `Stripe-Signature` on raw bytes and the events that resume flows.
@Suite struct StripeWebhookTests {
    static let secret = "whsec_test_secret_0123456789"
    static let payload = Array(#"{"id": "evt_1", "type": "checkout.session.completed"}"#.utf8)

    /// `t=1795000000`, `v1=` HMAC-SHA256 of `1795000000.<payload>` under the secret, computed outside Swift with
    /// Python's `hmac` module: the signer and the verifier are checked against an answer neither of them made.
    static let known = "t=1795000000,v1=eb23afb22cd23742b795a42b88358738ffdc572ebb0f06fd1eeab5988ce524d8"

    @Test func aSignatureMustMatchTheBytesTheSecretAndTheTime() {
        let now: Int64 = 1_795_000_000
        #expect(StripeWebhook.signature(Self.payload, secret: Self.secret, time: now) == Self.known)
        let good = Self.known
        #expect(StripeWebhook.isSigned(Self.payload, header: good, secret: Self.secret, now: now))
        #expect(StripeWebhook.isSigned(Self.payload, header: good, secret: Self.secret, now: now + 300), "300 s of tolerance")
        #expect(!StripeWebhook.isSigned(Self.payload, header: good, secret: Self.secret, now: now + 301), "a replay after 5 minutes")
        #expect(!StripeWebhook.isSigned(Self.payload + [0x20], header: good, secret: Self.secret, now: now), "one byte more")
        #expect(!StripeWebhook.isSigned(Self.payload, header: good, secret: "whsec_other_secret", now: now))
        #expect(!StripeWebhook.isSigned(Self.payload, header: nil, secret: Self.secret, now: now))
        #expect(!StripeWebhook.isSigned(Self.payload, header: "t=\(now)", secret: Self.secret, now: now))
        #expect(!StripeWebhook.isSigned(Self.payload, header: "garbage", secret: Self.secret, now: now))
        #expect(!StripeWebhook.isSigned(Self.payload, header: good, secret: "", now: now))
        // The time is part of what is signed: moving it breaks the signature.
        let moved = good.replacingOccurrences(of: "t=\(now)", with: "t=\(now + 1)")
        #expect(!StripeWebhook.isSigned(Self.payload, header: moved, secret: Self.secret, now: now))
    }

    @Test func anyOfSeveralV1SignaturesMayMatch() {
        let now: Int64 = 1_795_000_000
        let good = StripeWebhook.signature(Self.payload, secret: Self.secret, time: now)
        let v1 = good.split(separator: ",")[1]
        let rolled = "t=\(now),v1=\(String(repeating: "0", count: 64)),\(v1),v0=abc"
        #expect(StripeWebhook.isSigned(Self.payload, header: rolled, secret: Self.secret, now: now))
        #expect(!StripeWebhook.isSigned(Self.payload, header: "t=\(now),v0=\(v1.dropFirst(3))", secret: Self.secret, now: now),
                "only v1 counts")
    }

    static func event(_ type: String, _ object: String) -> [UInt8] {
        Array(#"{"id": "evt_9", "object": "event", "type": "\#(type)", "data": {"object": \#(object)}}"#.utf8)
    }

    @Test func checkoutEventsResumeBySessionLinkOrConversation() throws {
        let paid = try StripeWebhook.parse(Self.event("checkout.session.completed", """
            {"id": "cs_1", "payment_status": "paid", "amount_total": 15000, "currency": "brl", "payment_intent": "pi_1",
             "payment_link": "plink_1", "customer_details": {"email": "ana@example.com"}, "metadata": {"flowline_conversation": "c1"}}
            """))
        #expect(paid.name == "stripe.paid")
        #expect(paid.keys == ["cs_1", "plink_1", "c1"])
        #expect(paid.payload["amount"] == 15000 && paid.payload["email"] == "ana@example.com" && paid.payload["event"] == "evt_9")

        let pending = try StripeWebhook.parse(Self.event("checkout.session.completed", #"{"id": "cs_2", "payment_status": "unpaid"}"#))
        #expect(pending.name == nil, "an async payment method settles later, in its own event")
        #expect(try StripeWebhook.parse(Self.event("checkout.session.async_payment_succeeded", #"{"id": "cs_2"}"#)).name == "stripe.paid")
        #expect(try StripeWebhook.parse(Self.event("checkout.session.async_payment_failed", #"{"id": "cs_2"}"#)).name == "stripe.failed")
        #expect(try StripeWebhook.parse(Self.event("checkout.session.expired", #"{"id": "cs_2"}"#)).name == "stripe.expired")
        #expect(try StripeWebhook.parse(Self.event("customer.created", #"{"id": "cus_1"}"#)).name == nil)
    }

    @Test func paymentIntentEventsReachTheirConversationUnlessACheckoutMadeThem() throws {
        let own = try StripeWebhook.parse(Self.event("payment_intent.succeeded",
                                                     #"{"id": "pi_1", "amount": 500, "status": "succeeded", "metadata": {"flowline_conversation": "c1"}}"#))
        #expect(own.name == "stripe.paid" && own.keys == ["pi_1", "c1"])
        let fromCheckout = try StripeWebhook.parse(Self.event("payment_intent.succeeded",
            #"{"id": "pi_2", "metadata": {"flowline_conversation": "c1", "flowline_checkout": "1"}}"#))
        #expect(fromCheckout.keys == ["pi_2"], "the session's own event resumes the conversation, once")
        let failed = try StripeWebhook.parse(Self.event("payment_intent.payment_failed",
            #"{"id": "pi_3", "last_payment_error": {"code": "card_declined"}, "metadata": {}}"#))
        #expect(failed.name == "stripe.failed" && failed.payload["failure"] == "card_declined")
    }

    @Test func malformedEventsAreRefused() {
        for body in ["", "[]", #"{"id": "evt_1"}"#, #"{"id": "evt_1", "type": "x", "data": {}}"#, "{\"id\": 1, \"type\": \"x\", \"data\": {\"object\": {}}}"] {
            #expect(throws: ConnectorError.self) { try StripeWebhook.parse(Array(body.utf8)) }
        }
    }
}
