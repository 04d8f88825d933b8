import Connectors
import FlowEngine
import FlowVM
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import FlowlineTestKit
import Testing

/// `StripeAPI` against `FakeStripe` on loopback: form encoding, metadata, idempotent replays, and failures decided
/// the way Stripe documents them.
@Suite struct StripeAPITests {
    static func context(_ key: String = "conv-1:3") -> ConnectorContext {
        ConnectorContext(tenant: "t1", conversation: "conv-1", idempotencyKey: key, attempt: 1)
    }
    static let checkout: Value = ["amount": 15000, "currency": "BRL", "description": "Consulta 10h", "customer_email": "ana@example.com"]

    @Test func checkoutIsFormEncodedWithBothMetadataAndReplaysUnderTheSameKey() async throws {
        let fake = FakeStripe()
        try await fake.app.test(.live) { client in
            let api = StripeAPI(secretKey: fake.key, apiURL: "http://127.0.0.1:\(client.port!)", successURL: "https://clinic.example/paid")
            let first = try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context())
            #expect(first["id"].text.hasPrefix("cs_test_"))
            #expect(first["url"].text == "https://checkout.stripe.com/c/pay/\(first["id"].text)")
            let form = try #require(fake.created.withLock { $0.first }).form
            #expect(form["line_items[0][price_data][unit_amount]"] == "15000")
            #expect(form["line_items[0][price_data][currency]"] == "brl")
            #expect(form["line_items[0][price_data][product_data][name]"] == "Consulta 10h")
            #expect(form["success_url"] == "https://clinic.example/paid")
            #expect(form["customer_email"] == "ana@example.com")
            #expect(form["metadata[flowline_conversation]"] == "conv-1")
            #expect(form["payment_intent_data[metadata][flowline_conversation]"] == "conv-1",
                    "a session's metadata is not copied to its PaymentIntent, so it is set on both")
            #expect(form["client_reference_id"] == "conv-1")

            // A retry after a crash sends the same key and gets the same session: one session in all.
            let again = try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context())
            #expect(again == first)
            #expect(fake.created.withLock { $0.count } == 1)
            #expect(fake.attempts.withLock { $0.map(\.replayed) } == [false, true])

            // The same key with other parameters is Stripe's idempotency_error: permanent.
            let changed: Value = ["amount": 9900, "currency": "BRL", "description": "Consulta 10h", "customer_email": "ana@example.com"]
            await #expect(throws: ConnectorError(code: "stripe_idempotency_error", message: "Stripe refused the request (400, idempotency_error)",
                                                 retryable: false)) {
                try await api.perform(action: "stripe.checkout", parameters: changed, context: Self.context())
            }
        }
    }

    @Test func paymentLinksCreateAPriceThenTheLinkEachIdempotent() async throws {
        let fake = FakeStripe()
        try await fake.app.test(.live) { client in
            let api = StripeAPI(secretKey: fake.key, apiURL: "http://127.0.0.1:\(client.port!)")
            let parameters: Value = ["amount": 5000, "currency": "usd", "description": "Course"]
            let link = try await api.perform(action: "stripe.payment_link", parameters: parameters, context: Self.context("conv-1:9"))
            #expect(link["id"].text.hasPrefix("plink_") && link["url"].text.hasPrefix("https://buy.stripe.com/"))
            let again = try await api.perform(action: "stripe.payment_link", parameters: parameters, context: Self.context("conv-1:9"))
            #expect(again == link)
            let created = fake.created.withLock { $0 }
            #expect(created.map(\.path) == ["v1/prices", "v1/payment_links"])
            #expect(created.map(\.idempotencyKey) == ["conv-1:9-price", "conv-1:9-link"])
            #expect(created[1].form["metadata[flowline_conversation]"] == "conv-1")
        }
    }

    @Test func failuresAreRetriedOrNotAsStripeSays() async throws {
        let fake = FakeStripe()
        fake.failures.withLock {
            $0 = [
                .init(.tooManyRequests, #"{"error": {"type": "rate_limit_error", "code": "rate_limit", "message": "Too many requests"}}"#),
                .init(.serviceUnavailable, #"{"error": {"type": "api_error", "message": "Service unavailable"}}"#),
                .init(.conflict, #"{"error": {"type": "invalid_request_error", "code": "lock_timeout"}}"#,
                      headers: [.contentType: "application/json", HTTPField.Name("Stripe-Should-Retry")!: "false"]),
                .init(.init(code: 402), #"{"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}"#),
            ]
        }
        try await fake.app.test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)"
            let api = StripeAPI(secretKey: fake.key, apiURL: url, successURL: "https://x.example/ok")
            var outcomes: [ConnectorError] = []
            for i in 0..<4 {
                do { _ = try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("conv-1:\(i)")) } catch let e as ConnectorError {
                    outcomes.append(e)
                }
            }
            #expect(outcomes.map(\.code) == ["stripe_rate_limit", "stripe_api_error", "stripe_lock_timeout", "stripe_card_declined"])
            #expect(outcomes.map(\.retryable) == [true, true, false, false], "Stripe-Should-Retry: false overrides a 409")

            // A wrong key is permanent, and the error quotes nothing Stripe said about it.
            let wrong = StripeAPI(secretKey: "sk_test_wrong_key_987", apiURL: url, successURL: "https://x.example/ok")
            do {
                _ = try await wrong.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context())
                Issue.record("a wrong key must fail")
            } catch let e as ConnectorError {
                #expect(e.code == "stripe_invalid_request_error" && !e.retryable)
                #expect(!e.message.contains("sk_") && !e.description.contains("sk_"))
            }
        }
    }

    /// Stripe saves a 500 under its key once the endpoint began executing and answers every retry with it: the first
    /// 500 is retried, its replay is not (it would be the same for a day), and nothing is created behind it.
    @Test func aFiveHundredIsRetriedOnceAndItsReplayIsPermanent() async throws {
        let fake = FakeStripe()
        fake.failures.withLock { $0 = [.init(.internalServerError, #"{"error": {"type": "api_error", "message": "Something went wrong"}}"#)] }
        try await fake.app.test(.live) { client in
            let api = StripeAPI(secretKey: fake.key, apiURL: "http://127.0.0.1:\(client.port!)", successURL: "https://x.example/ok")
            var outcomes: [ConnectorError] = []
            for _ in 0..<2 {
                do { _ = try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("conv-1:500")) } catch let e as ConnectorError {
                    outcomes.append(e)
                }
            }
            #expect(outcomes.map(\.retryable) == [true, false])
            #expect(outcomes.map(\.code) == ["stripe_api_error", "stripe_api_error"])
            #expect(fake.attempts.withLock { $0.map(\.replayed) } == [false, true])
            #expect(fake.created.withLock { $0.isEmpty })
            // Another key is another request: it creates the session.
            let session = try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("conv-1:501"))
            #expect(session["id"].text.hasPrefix("cs_test_"))
        }
    }

    /// Keys belong to an account: two accounts using one key get a session each; within one account, a second
    /// request while the first still runs is a 409 (retried), and saves nothing.
    @Test func idempotencyKeysAreScopedPerAccountAndAConcurrentRepeatIsAConflict() async throws {
        let fake = FakeStripe(otherAccounts: ["sk_test_other_4567"])
        try await fake.app.test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)"
            let first = StripeAPI(secretKey: fake.key, apiURL: url, successURL: "https://x.example/ok")
            let second = StripeAPI(secretKey: "sk_test_other_4567", apiURL: url, successURL: "https://x.example/ok")
            let a = try await first.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("shared-key"))
            let b = try await second.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("shared-key"))
            #expect(a["id"] != b["id"])
            #expect(fake.created.withLock { $0.map(\.account) } == [fake.key, "sk_test_other_4567"])

            fake.hold()
            let held = Task { try await first.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("busy-key")) }
            _ = try await eventually("the first request is in flight") { fake.held == 1 ? true : nil }
            do {
                _ = try await first.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("busy-key"))
                Issue.record("a concurrent request with the same key must be refused")
            } catch let e as ConnectorError {
                #expect(e.code == "stripe_idempotency_key_in_use" && e.retryable)
            }
            fake.release()
            let session = try await held.value
            // Once the first finished, the retry gets its answer again.
            #expect(try await first.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context("busy-key")) == session)
            #expect(fake.attempts.withLock { $0.suffix(3).map(\.status) } == [409, 200, 200])
            #expect(fake.created.withLock { $0.count } == 3)
        }
    }

    @Test func aSessionWithoutSuccessURLFailsBeforeAnyRequest() async throws {
        let fake = FakeStripe()
        try await fake.app.test(.live) { client in
            let api = StripeAPI(secretKey: fake.key, apiURL: "http://127.0.0.1:\(client.port!)")
            await #expect(throws: ConnectorError.self) {
                try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: Self.context())
            }
            #expect(fake.hits == 0)
        }
    }

    /// A Stripe that accepts the connection and never answers, or hangs up at once: both retried later.
    @Test func aStripeThatHangsOrHangsUpIsRetryable() async throws {
        for hangUp in [false, true] {
            let (server, port) = try await silentServer(hangUp: hangUp)
            let api = StripeAPI(secretKey: "sk_test_x1234567", apiURL: "http://127.0.0.1:\(port)", successURL: "https://x.example/ok")
            var context = Self.context()
            context.deadline = .now + .milliseconds(500)
            let start = ContinuousClock.now
            do {
                _ = try await api.perform(action: "stripe.checkout", parameters: Self.checkout, context: context)
                Issue.record("nothing answers on port \(port)")
            } catch let e as ConnectorError {
                #expect(e.code == "unreachable" && e.retryable, "hang up: \(hangUp)")
            }
            // Well under the 30 s a context gives by default, so only the 500 ms deadline can end it this soon; not
            // a speed promise (7.5 s was seen on a loaded CI machine).
            #expect(ContinuousClock.now - start < .seconds(20), "the deadline ends the wait")
            try await server.close()
        }
    }
}
