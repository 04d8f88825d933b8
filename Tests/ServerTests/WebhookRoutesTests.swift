import Connectors
import Crypto
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import FlowlineTestKit
import Testing

/// `/webhooks/whatsapp/{id}`: the handshake, signed notifications stored once, forgeries refused.
@Suite struct WebhookRoutesTests {
    static let flow = """
        flow: wa-hello
        trigger: { channel: whatsapp }
        start: ask
        blocks:
          ask:
            ask: "Name?"
            buttons: [Ana, Bruno]
            save: name
            next: bye
          bye:
            end: "Bye {{ name }}"
        """

    static func notification(_ messages: String, number: String = "106540352242922") -> String {
        """
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
          "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "\(number)"},
          "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}], "messages": [\(messages)]}}]}]}
        """
    }

    /// Publishes `flow` and creates the WhatsApp channel that sends through the fake Graph at `graphPort`; returns its
    /// webhook path.
    static func publishWithWhatsApp(_ client: some TestClientProtocol, rig: RouterTests.Rig, graphPort: Int, flow: String = Self.flow) async throws -> String {
        let a = RouterTests.auth(rig.adminA)
        try await client.execute(uri: "/v1/flows/wa-hello", method: .put, headers: a, body: RouterTests.body(flow))
        try await client.execute(uri: "/v1/flows/wa-hello/publish", method: .post, headers: a) { #expect($0.status == .created) }
        let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
            {"kind": "whatsapp", "name": "main", "phone_number_id": "106540352242922", "verify_token": "verify-me-please",
             "app_secret": "app-secret-0123", "access_token": "EAAG-token-xyz", "graph_url": "http://127.0.0.1:\(graphPort)"}
            """)) { RouterTests.json($0) }
        return channel["webhook_path"].text
    }

    static func signed(_ body: String, secret: String = "app-secret-0123") -> HTTPFields {
        [HTTPField.Name("X-Hub-Signature-256")!: EndToEndTests.hubSignature(body, secret: secret), .contentType: "application/json"]
    }

    @Test func signedNotificationsStartAndFeedConversationsOnce() async throws {
        let rig = try await RouterTests.Rig()
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/wa-hello", method: .put, headers: a, body: RouterTests.body(Self.flow))
                try await client.execute(uri: "/v1/flows/wa-hello/publish", method: .post, headers: a) { #expect($0.status == .created) }
                let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                    {"kind": "whatsapp", "name": "main number", "phone_number_id": "106540352242922",
                     "verify_token": "verify-me-please", "app_secret": "app-secret-0123", "access_token": "EAAG-token-xyz",
                     "graph_url": "http://127.0.0.1:\(fake.port!)"}
                    """)) { r in
                    #expect(r.status == .created)
                    let text = String(buffer: r.body)
                    #expect(!text.contains("app-secret-0123") && !text.contains("EAAG-token-xyz") && !text.contains("verify-me-please"))
                    return RouterTests.json(r)
                }
                let path = channel["webhook_path"].text
                #expect(path == "/webhooks/whatsapp/\(channel["id"].text)")

                // The handshake.
                try await client.execute(uri: path + "?hub.mode=subscribe&hub.verify_token=verify-me-please&hub.challenge=1158201444", method: .get) { r in
                    #expect(r.status == .ok)
                    #expect(String(buffer: r.body) == "1158201444")
                }
                try await client.execute(uri: path + "?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", method: .get) {
                    #expect($0.status == .forbidden)
                }
                try await client.execute(uri: "/webhooks/whatsapp/ch_nope?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1", method: .get) {
                    #expect($0.status == .notFound)
                }

                // A signed text starts the flow; the same notification again is a duplicate.
                let first = Self.notification(#"{"from": "16505551234", "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "hi"}}"#)
                for expected in [1.0, 0.0] {
                    try await client.execute(uri: path, method: .post, headers: Self.signed(first), body: RouterTests.body(first)) { r in
                        #expect(r.status == .ok)
                        #expect(RouterTests.json(r)["stored"] == .number(expected))
                    }
                }
                try await rig.engine.drain()
                let conversations = try await rig.store.conversations(tenant: "a", status: nil, contact: "16505551234")
                try #require(conversations.count == 1)
                #expect(conversations[0].flow == "wa-hello")

                // A button reply continues it: the payload is the button's id, the text its title.
                let reply = Self.notification("""
                    {"from": "16505551234", "id": "wamid.2", "timestamp": "2", "type": "interactive",
                     "interactive": {"type": "button_reply", "button_reply": {"id": "Ana", "title": "Ana"}}}
                    """)
                try await client.execute(uri: path, method: .post, headers: Self.signed(reply), body: RouterTests.body(reply)) { #expect($0.status == .ok) }
                try await rig.engine.drain()
                let texts = try await rig.store.messages(conversation: conversations[0].id, tenant: "a").map(\.text)
                #expect(texts == ["hi", "Name?", "Ana", "Bye Ana"])

                // Another business number of the same app is not this channel's.
                let other = Self.notification(#"{"from": "1", "id": "wamid.3", "timestamp": "3", "type": "text", "text": {"body": "x"}}"#, number: "999")
                try await client.execute(uri: path, method: .post, headers: Self.signed(other), body: RouterTests.body(other)) { r in
                    #expect(RouterTests.json(r)["ignored"] == 1)
                }
                #expect(graph.messages.map { $0["type"].text } == ["interactive", "text"], "the question with its buttons, then the goodbye")
            }
        }
        await rig.store.close()
    }

    @Test func forgedUnsignedOrMalformedPostsAreRefusedAndStoreNothing() async throws {
        let rig = try await RouterTests.Rig()
        let nobody = ClosedPort()
        try await rig.app.test(.router) { client in
            // A flow is published, so a post that got through would start a conversation: nothing else proves none did.
            let path = try await Self.publishWithWhatsApp(client, rig: rig, graphPort: nobody.port)
            let channels = try await client.execute(uri: "/v1/channels", method: .get, headers: RouterTests.auth(rig.adminA)) { RouterTests.json($0) }
            let channel = channels["channels"][0]
            let body = Self.notification(#"{"from": "16505551234", "id": "wamid.9", "timestamp": "1", "type": "text", "text": {"body": "hi"}}"#)
            let cases: [(HTTPFields, String, HTTPResponse.Status)] = [
                ([.contentType: "application/json"], body, .unauthorized),
                (Self.signed(body, secret: "someone-elses-secret"), body, .unauthorized),
                (Self.signed(body), body.replacingOccurrences(of: "hi", with: "ho"), .unauthorized),
                (Self.signed("{}"), "{}", .badRequest),
            ]
            for (headers, sent, status) in cases {
                try await client.execute(uri: path, method: .post, headers: headers, body: RouterTests.body(sent)) { r in
                    #expect(r.status == status)
                    #expect(r.headers[.contentType] == "application/problem+json")
                }
            }
            try await client.execute(uri: "/webhooks/whatsapp/ch_nope", method: .post, headers: Self.signed(body), body: RouterTests.body(body)) {
                #expect($0.status == .notFound)
            }
            // An api channel is not a WhatsApp channel, and a WhatsApp channel takes no api inbound.
            try await client.execute(uri: "/v1/channels/\(channel["id"].text)/inbound", method: .post, headers: RouterTests.auth(rig.adminA),
                                     body: RouterTests.body(#"{"from": "1", "text": "x", "id": "z"}"#)) { #expect($0.status == .conflict) }
            // Another tenant's key cannot see or create through it; missing fields are clear errors.
            try await client.execute(uri: "/v1/channels", method: .post, headers: RouterTests.auth(rig.adminA),
                                     body: RouterTests.body(#"{"kind": "whatsapp", "name": "n", "phone_number_id": "12ab"}"#)) {
                #expect($0.status == .badRequest)
            }
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: nil).isEmpty, "nothing forged was stored")
            // The genuine post, signed with the channel's secret, is stored: one conversation, with its own text.
            try await client.execute(uri: path, method: .post, headers: Self.signed(body), body: RouterTests.body(body)) { #expect($0.status == .ok) }
        }
        try await rig.engine.runTurns()
        let stored = try await rig.store.conversations(tenant: "a", status: nil, contact: nil)
        #expect(stored.count == 1)
        if let c = stored.first {
            #expect(try await rig.store.messages(conversation: c.id, tenant: "a").filter { $0.direction == .inbound }.map(\.text) == ["hi"])
        }
        await rig.store.close()
    }

    /// Contacts are keyed by business-scoped user id when a notification carries one. A reply must not put that id
    /// in `to` (the Graph takes phone numbers there): it goes in `recipient`, with `to` the phone number when the
    /// notification carried one too. The fake refuses a BSUID in `to`, as the Graph does.
    @Test func repliesToAContactKnownByBSUIDNameItAsRecipient() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let rig = try await RouterTests.Rig()
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let path = try await Self.publishWithWhatsApp(client, rig: rig, graphPort: fake.port!,
                                                             flow: Self.flow.replacingOccurrences(of: "ask: \"Name?\"", with: "ask: \"Name? ({{ contact.phone ?? 'no number' }})\""))
                // One with both ids, one with a username only (no phone number in the notification at all).
                let both = """
                    {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                      "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511988887777", "user_id": "BR.13491208655302741918"}],
                      "messages": [{"from": "5511988887777", "from_user_id": "BR.13491208655302741918", "id": "wamid.b1", "timestamp": "1",
                                    "type": "text", "text": {"body": "oi"}}]}}]}]}
                    """
                let userOnly = """
                    {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                      "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "contacts": [{"profile": {"name": "Bob"}, "user_id": "US.99887766554433221100"}],
                      "messages": [{"from_user_id": "US.99887766554433221100", "id": "wamid.u1", "timestamp": "1", "type": "text",
                                    "text": {"body": "hi"}}]}}]}]}
                    """
                for body in [both, userOnly] {
                    try await client.execute(uri: path, method: .post, headers: Self.signed(body), body: RouterTests.body(body)) { #expect($0.status == .ok) }
                }
                try await rig.engine.drain()
                let sent = graph.messages
                let dead = try await rig.store.deliveries(tenant: "a", state: .dead).map(\.lastError)
                try #require(sent.count == 2, "\(dead)")
                let toAna = try #require(sent.first { $0["recipient"] == "BR.13491208655302741918" })
                #expect(toAna["to"] == "5511988887777", "the phone number goes in to, and the Graph prefers it")
                let toBob = try #require(sent.first { $0["recipient"] == "US.99887766554433221100" })
                #expect(toBob["to"] == .null, "no phone number known: the BSUID alone, never in to")
                // The flow's contact.phone is the number, never the BSUID.
                #expect(toAna["interactive"]["body"]["text"] == "Name? (5511988887777)")
                #expect(toBob["interactive"]["body"]["text"] == "Name? (no number)")
                #expect(sent.allSatisfy { $0["to"] == .null || FakeGraphAPI.isPhone($0["to"].text) })
            }
        }
        await rig.store.close()
    }

    /// The fake answers as the Graph does for what it refuses: a BSUID in `to`, another business's number in the path.
    @Test func theFakeGraphRefusesWhatTheGraphRefuses() async throws {
        let graph = FakeGraphAPI(token: "t0ken")
        try await graph.app.test(.live) { fake in
            let api = WhatsAppCloudAPI(phoneNumberID: "106540352242922", accessToken: "t0ken", graphURL: "http://127.0.0.1:\(fake.port!)")
            let context = ConnectorContext(tenant: "a", conversation: "c", idempotencyKey: "c:1", attempt: 1, deadline: .now + .seconds(10))
            let forged: Value = ["messaging_product": "whatsapp", "to": "US.13491208655302741918", "type": "text", "text": ["body": "hi"]]
            await #expect(throws: ConnectorError.self) { try await api.post(forged, context: context) }
            let other = WhatsAppCloudAPI(phoneNumberID: "999", accessToken: "t0ken", graphURL: "http://127.0.0.1:\(fake.port!)")
            await #expect(throws: ConnectorError.self) {
                try await other.send(to: WhatsAppRecipient(contact: "16505551234"), message: ["text": "hi"], context: context)
            }
            _ = try await api.send(to: WhatsAppRecipient(contact: "16505551234"), message: ["text": "hi"], context: context)
            #expect(graph.messages.count == 1)
        }
    }

    @Test func repliesGoOutThroughTheCloudAPIAndGraphErrorsAreDecidedByCode() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let rig = try await RouterTests.Rig()
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let path = try await Self.publishWithWhatsApp(client, rig: rig, graphPort: fake.port!)
                for (id, from) in [("wamid.1", "16505551234"), ("wamid.2", FakeGraphAPI.windowClosed), ("wamid.3", FakeGraphAPI.rateLimited)] {
                    let body = Self.notification(#"{"from": "\#(from)", "id": "\#(id)", "timestamp": "1", "type": "text", "text": {"body": "hi"}}"#)
                    try await client.execute(uri: path, method: .post, headers: Self.signed(body), body: RouterTests.body(body)) { #expect($0.status == .ok) }
                }
                try await rig.engine.drain()
                let sent = graph.messages
                try #require(sent.count == 1)
                #expect(sent[0]["to"] == "16505551234")
                #expect(sent[0]["interactive"]["action"]["buttons"][1]["reply"]["title"] == "Bruno")
                // Outside the 24-hour window the send fails for good, and the conversation says why.
                let dead = try await rig.store.deliveries(tenant: "a", state: .dead)
                #expect(dead.count == 1 && dead[0].lastError?.contains("whatsapp_window_closed") == true,
                        "the Graph said 131047 and the flow names no whatsapp_template")
                let closed = try await rig.store.conversations(tenant: "a", status: .failed, contact: FakeGraphAPI.windowClosed)
                #expect(closed.first?.failure?.contains("24-hour") == true)
                // A rate limit (130429) is retried later, not failed.
                let pending = try await rig.store.deliveries(tenant: "a", state: .pending)
                #expect(pending.count == 1 && pending[0].lastError?.contains("whatsapp_130429") == true)
                #expect(try await rig.store.conversations(tenant: "a", status: .failed, contact: FakeGraphAPI.rateLimited).isEmpty)
            }
        }
        await rig.store.close()
    }

    // MARK: Stripe

    static let payFlow = """
        flow: pay
        trigger: { channel: api }
        start: checkout
        blocks:
          checkout:
            use: stripe.checkout
            with: { amount: 15000, currency: brl, description: "Consulta" }
            save: checkout
            next: link
          link:
            text: "Pay here: {{ checkout.url }}"
            next: wait
          wait:
            wait_for: { event: stripe.paid, match: checkout.id, timeout: 2d, on_timeout: late }
            save: payment
            next: done
          late:
            end: "Expired"
          done:
            end: "Paid {{ payment.amount }} ({{ payment.email }})"
        """

    static func stripeSigned(_ body: String, secret: String = "whsec_flowline_test_1", at time: Int64 = Int64(Date().timeIntervalSince1970)) -> HTTPFields {
        [HTTPField.Name("Stripe-Signature")!: FakeStripe.signature(body, secret: secret, time: time), .contentType: "application/json"]
    }

    /// Rotating Stripe keys: a second `stripe` channel is created while a payment is pending. New sessions are made
    /// with the newest account's key; the old channel still verifies the late event for the session it made, and the
    /// old secret does not verify at the new channel's path.
    @Test func theNewestStripeAccountMakesSessionsWhileTheOldOneStillVerifiesLateEvents() async throws {
        let stripe = FakeStripe(key: "sk_test_old_0123", otherAccounts: ["sk_test_new_4567"])
        let rig = try await RouterTests.Rig()
        try await stripe.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/pay", method: .put, headers: a, body: RouterTests.body(Self.payFlow))
                try await client.execute(uri: "/v1/flows/pay/publish", method: .post, headers: a) { #expect($0.status == .created) }
                func account(_ name: String, _ key: String, _ secret: String) async throws -> String {
                    try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                        {"kind": "stripe", "name": "\(name)", "secret_key": "\(key)", "webhook_secret": "\(secret)",
                         "api_url": "http://127.0.0.1:\(fake.port!)", "success_url": "https://clinic.example/paid"}
                        """)) { RouterTests.json($0)["webhook_path"].text }
                }
                let oldPath = try await account("old", "sk_test_old_0123", "whsec_old_secret")
                let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
                try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "1", "text": "hi", "id": "m1"}"#))
                try await rig.engine.drain()
                // Keys rotate while the first customer has not paid yet.
                let newPath = try await account("new", "sk_test_new_4567", "whsec_new_secret")
                try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "2", "text": "hi", "id": "m2"}"#))
                try await rig.engine.drain()
                let created = stripe.created.withLock { $0 }
                #expect(created.map(\.account) == ["sk_test_old_0123", "sk_test_new_4567"], "the second session is the new account's")

                let late = stripe.completed(created[0].id, eventID: "evt_old_paid")
                try await client.execute(uri: newPath, method: .post, headers: Self.stripeSigned(late, secret: "whsec_old_secret"), body: RouterTests.body(late)) {
                    #expect($0.status == .unauthorized, "the old secret is not the new channel's")
                }
                try await client.execute(uri: oldPath, method: .post, headers: Self.stripeSigned(late, secret: "whsec_old_secret"), body: RouterTests.body(late)) { r in
                    #expect(r.status == .ok && RouterTests.json(r)["resumed"] == true, "the old channel verifies the late event")
                }
                let fresh = stripe.completed(created[1].id, eventID: "evt_new_paid")
                try await client.execute(uri: newPath, method: .post, headers: Self.stripeSigned(fresh, secret: "whsec_new_secret"), body: RouterTests.body(fresh)) { r in
                    #expect(r.status == .ok && RouterTests.json(r)["resumed"] == true)
                }
                try await rig.engine.drain()
                #expect(try await rig.store.conversations(tenant: "a", status: .ended, contact: nil).count == 2, "both customers paid")
            }
        }
        await rig.store.close()
    }

    @Test func aSignedStripeEventResumesTheConversationWaitingOnItsCheckoutOnce() async throws {
        let stripe = FakeStripe()
        let rig = try await RouterTests.Rig()
        try await stripe.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/pay", method: .put, headers: a, body: RouterTests.body(Self.payFlow))
                try await client.execute(uri: "/v1/flows/pay/publish", method: .post, headers: a) { #expect($0.status == .created) }
                let account = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                    {"kind": "stripe", "name": "payments", "secret_key": "\(stripe.key)", "webhook_secret": "whsec_flowline_test_1",
                     "api_url": "http://127.0.0.1:\(fake.port!)", "success_url": "https://clinic.example/paid"}
                    """)) { r in
                    #expect(r.status == .created)
                    #expect(!String(buffer: r.body).contains(stripe.key) && !String(buffer: r.body).contains("whsec_flowline_test_1"))
                    return RouterTests.json(r)
                }
                let path = account["webhook_path"].text
                #expect(path == "/webhooks/stripe/\(account["id"].text)")
                #expect(account["success_url"] == "https://clinic.example/paid", "settings are shown, secrets are not")
                let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
                try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "5511", "text": "hi", "id": "m1"}"#)) { #expect($0.status == .accepted) }
                try await rig.engine.drain()
                let created = stripe.created.withLock { $0 }
                try #require(created.count == 1)
                let conversation = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "5511").first)
                #expect(created[0].form["metadata[flowline_conversation]"] == .some(conversation.id))
                #expect(created[0].form["metadata[flowline_tenant]"] == "a")
                let session = try #require(try await rig.store.messages(conversation: conversation.id, tenant: "a").last?.text
                    .components(separatedBy: "/pay/").last)

                // Forged, stale and unsigned events are refused and resume nothing.
                let paid = stripe.completed(session, eventID: "evt_paid_1")
                let refused: [HTTPFields] = [
                    [.contentType: "application/json"],
                    Self.stripeSigned(paid, secret: "whsec_someone_else"),
                    Self.stripeSigned(paid, at: Int64(Date().timeIntervalSince1970) - 301),
                ]
                for headers in refused {
                    try await client.execute(uri: path, method: .post, headers: headers, body: RouterTests.body(paid)) { #expect($0.status == .unauthorized) }
                }
                try await client.execute(uri: path, method: .post, headers: Self.stripeSigned("{}"), body: RouterTests.body("{}")) {
                    #expect($0.status == .badRequest)
                }
                // Completed but not yet paid (an async method): acknowledged, nothing resumes.
                let unpaid = stripe.completed(session, paid: false, eventID: "evt_unpaid")
                try await client.execute(uri: path, method: .post, headers: Self.stripeSigned(unpaid), body: RouterTests.body(unpaid)) { r in
                    #expect(r.status == .ok && RouterTests.json(r)["resumed"] == false)
                }
                try await rig.engine.drain()
                #expect(try await rig.store.conversation(id: conversation.id, tenant: "a")?.status == .waiting)

                // Another tenant's Stripe account cannot resume tenant a's conversation with the same session id.
                let b = RouterTests.auth(rig.adminB)
                let other = try await client.execute(uri: "/v1/channels", method: .post, headers: b, body: RouterTests.body("""
                    {"kind": "stripe", "name": "b", "secret_key": "sk_test_b_123456", "webhook_secret": "whsec_b_secret_1"}
                    """)) { RouterTests.json($0) }
                try await client.execute(uri: other["webhook_path"].text, method: .post, headers: Self.stripeSigned(paid, secret: "whsec_b_secret_1"),
                                         body: RouterTests.body(paid)) { #expect(RouterTests.json($0)["resumed"] == false) }

                // Paid: the conversation resumes with the payment; the same event again resumes nothing.
                for expected in [true, false] {
                    try await client.execute(uri: path, method: .post, headers: Self.stripeSigned(paid), body: RouterTests.body(paid)) { r in
                        #expect(r.status == .ok)
                        #expect(RouterTests.json(r)["resumed"] == .bool(expected))
                    }
                }
                try await rig.engine.drain()
                let texts = try await rig.store.messages(conversation: conversation.id, tenant: "a").map(\.text)
                #expect(texts.last == "Paid 15000 (ana@example.com)")
                #expect(texts.filter { $0.hasPrefix("Paid") }.count == 1)
                #expect(try await rig.store.conversation(id: conversation.id, tenant: "a")?.status == .ended)
                #expect(stripe.created.withLock { $0.count } == 1, "one Checkout Session in all")
            }
        }
        await rig.store.close()
    }

    /// localstripe is a second, independent implementation of Stripe's webhook signing: a PaymentIntent made there
    /// for a conversation (metadata `flowline_conversation`) resumes the conversation waiting on its id.
    @Test func localstripesSignedPaymentIntentEventResumesItsConversation() async throws {
        let localstripe = try Peer.value("FLOWLINE_TEST_LOCALSTRIPE")
        let flow = """
            flow: pi
            trigger: { channel: api }
            start: wait
            blocks:
              wait:
                wait_for: { event: stripe.paid, match: conversation.id }
                save: payment
                next: done
              done:
                end: "Paid {{ payment.amount }} {{ payment.status }}"
            """
        let rig = try await RouterTests.Rig()
        let secret = "whsec_localstripe_" + UUID().uuidString.prefix(8)
        try await rig.app.test(.live) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/pi", method: .put, headers: a, body: RouterTests.body(flow))
            try await client.execute(uri: "/v1/flows/pi/publish", method: .post, headers: a)
            let account = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                {"kind": "stripe", "name": "localstripe", "secret_key": "sk_test_localstripe", "webhook_secret": "\(secret)"}
                """)) { RouterTests.json($0) }
            let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                               body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
            try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                     body: RouterTests.body(#"{"from": "77", "text": "hi", "id": "m1"}"#))
            try await rig.engine.drain()
            let conversation = try #require(try await rig.store.conversations(tenant: "a", status: .waiting, contact: "77").first)

            let stripe = Peers.Form(base: localstripe, key: "sk_test_localstripe")
            try await stripe.post("/_config/webhooks/flowline-\(account["id"].text)", [
                ("url", "http://127.0.0.1:\(client.port!)\(account["webhook_path"].text)"), ("secret", secret),
                ("events[]", "payment_intent.succeeded"),
            ])
            let card = try await stripe.post("/v1/payment_methods", [
                ("type", "card"), ("card[number]", "4242424242424242"), ("card[exp_month]", "12"), ("card[exp_year]", "2030"), ("card[cvc]", "123"),
            ])
            let intent = try await stripe.post("/v1/payment_intents", [
                ("amount", "4200"), ("currency", "brl"), ("payment_method", card["id"].text),
                ("metadata[flowline_conversation]", conversation.id),
            ])
            _ = try await stripe.post("/v1/payment_intents/\(intent["id"].text)/confirm", [])

            // localstripe posts the signed event about a second later.
            let ended = try await Peers.eventually("the conversation ends", seconds: 20) {
                try await rig.engine.drain()
                return try await rig.store.conversation(id: conversation.id, tenant: "a")?.status == .ended ? true : nil
            }
            #expect(ended)
            let texts = try await rig.store.messages(conversation: conversation.id, tenant: "a").map(\.text)
            #expect(texts.last == "Paid 4200 succeeded")
        }
        await rig.store.close()
    }

    // MARK: WhatsApp: the 24-hour window, templates, media, read receipts

    static let followUpFlow = """
        flow: follow-up
        trigger: { channel: whatsapp }
        whatsapp_template: { name: reengage, language: pt_BR }
        start: hello
        blocks:
          hello:
            text: "Oi! Vou te lembrar amanhã."
            next: later
          later:
            wait: 25h
            next: check
          check:
            next:
              - when: now() < conversation.window_closes_at
                goto: open
              - goto: closed
          open:
            end: "still open"
          closed:
            end: "Sua consulta é amanhã."
        """

    static func waChannel(_ client: some TestClientProtocol, _ rig: RouterTests.Rig, graph port: Int) async throws -> String {
        let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: RouterTests.auth(rig.adminA), body: RouterTests.body("""
            {"kind": "whatsapp", "name": "main", "phone_number_id": "106540352242922", "verify_token": "verify-me-please",
             "app_secret": "app-secret-0123", "access_token": "EAAG-token-xyz", "graph_url": "http://127.0.0.1:\(port)"}
            """)) { RouterTests.json($0) }
        return channel["webhook_path"].text
    }

    /// An agent answering a handed-off WhatsApp chat after the 24-hour window closed: the message goes out as the
    /// flow's template, as the flow's own sends do (it used to be refused by the Graph with 131047 and dead-lettered).
    @Test func anAgentsLateReplyGoesOutAsTheFlowsTemplate() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let clock = APIChannelConnectorTests.Clock()
        let rig = try await RouterTests.Rig(clock: { clock.now })
        let flow = """
            flow: human
            trigger: { channel: whatsapp }
            whatsapp_template: { name: reengage, language: pt_BR }
            start: help
            blocks:
              help:
                handoff: { queue: support, message: "Um atendente já fala com você." }
                next: bye
              bye:
                end: "Até logo!"
            """
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/human", method: .put, headers: a, body: RouterTests.body(flow))
                try await client.execute(uri: "/v1/flows/human/publish", method: .post, headers: a) { #expect($0.status == .created) }
                let path = try await Self.waChannel(client, rig, graph: fake.port!)
                let hi = Self.notification(#"{"from": "16505551234", "id": "wamid.h1", "timestamp": "1", "type": "text", "text": {"body": "socorro"}}"#)
                try await client.execute(uri: path, method: .post, headers: Self.signed(hi), body: RouterTests.body(hi)) { #expect($0.status == .ok) }
                try await rig.engine.drain()
                let conversation = try #require(try await rig.store.conversations(tenant: "a", status: .handoff, contact: "16505551234").first?.id)
                try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: a) { #expect($0.status == .ok) }
                try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: a,
                                         body: RouterTests.body(#"{"text": "Olá, sou a Bia."}"#)) { #expect($0.status == .accepted) }
                try await rig.engine.drain()
                #expect(graph.messages.last?["type"] == "text", "inside the window, the agent's text as it is")

                clock.advance(seconds: 25 * 3600)
                try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: a,
                                         body: RouterTests.body(#"{"text": "Ainda precisa de ajuda?"}"#)) { #expect($0.status == .accepted) }
                try await rig.engine.drain()
                let late = try #require(graph.messages.last)
                #expect(late["type"] == "template" && late["template"]["name"] == "reengage", "\(late)")
                #expect(late["template"]["components"][0]["parameters"][0]["text"] == "Ainda precisa de ajuda?")
                #expect(try await rig.store.deliveries(tenant: "a", state: .dead).isEmpty)
            }
        }
        await rig.store.close()
    }

    @Test func outsideTheWindowTheFlowsTemplateIsSentAndFlowsCanTestTheWindow() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let clock = APIChannelConnectorTests.Clock()
        let rig = try await RouterTests.Rig(clock: { clock.now })
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/follow-up", method: .put, headers: a, body: RouterTests.body(Self.followUpFlow)) {
                    #expect(RouterTests.json($0)["valid"] == true)
                }
                try await client.execute(uri: "/v1/flows/follow-up/publish", method: .post, headers: a) { #expect($0.status == .created) }
                let path = try await Self.waChannel(client, rig, graph: fake.port!)
                let hi = Self.notification(#"{"from": "16505551234", "id": "wamid.hi", "timestamp": "1", "type": "text", "text": {"body": "oi"}}"#)
                try await client.execute(uri: path, method: .post, headers: Self.signed(hi), body: RouterTests.body(hi)) { #expect($0.status == .ok) }
                try await rig.engine.drain()
                #expect(graph.messages.map { $0["type"].text } == ["text"], "inside the window, plain text")
                // WhatsApp reports what became of it: shown with the conversation, never going backwards.
                let sentID = "wamid.fake.1"
                let statuses = """
                    {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                      "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "statuses": [{"id": "\(sentID)", "status": "read", "timestamp": "3", "recipient_id": "16505551234"},
                                   {"id": "\(sentID)", "status": "delivered", "timestamp": "2", "recipient_id": "16505551234"}]}}]}]}
                    """
                try await client.execute(uri: path, method: .post, headers: Self.signed(statuses), body: RouterTests.body(statuses)) { r in
                    #expect(RouterTests.json(r)["statuses"] == 2)
                }
                let conversationID = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "16505551234").first?.id)
                try await client.execute(uri: "/v1/conversations/\(conversationID)", method: .get, headers: a) { r in
                    // `at` is when the newest status was recorded, by the server's clock.
                    #expect(RouterTests.json(r)["deliveries"] == [["message_id": .string(sentID), "status": "read", "error_code": .null,
                                                                   "at": .string(clock.now.iso8601)]])
                }
                // The message is marked read once stored.
                _ = try await Peers.eventually("the message is marked read") { graph.reads.withLock { $0 } == ["wamid.hi"] ? true : nil }

                clock.advance(seconds: 25 * 3600)
                try await rig.engine.drain()
                let sent = graph.messages
                try #require(sent.count == 2)
                // The flow saw the window closed, and the send went out as the flow's template, the text its parameter.
                #expect(sent[1]["type"] == "template")
                #expect(sent[1]["template"]["name"] == "reengage" && sent[1]["template"]["language"]["code"] == "pt_BR")
                #expect(sent[1]["template"]["components"][0]["parameters"][0]["text"] == "Sua consulta é amanhã.")
                #expect(try await rig.store.deliveries(tenant: "a", state: .dead).isEmpty)
            }
        }
        await rig.store.close()
    }

    @Test func templatesAndMediaAreActionsFlowsUse() async throws {
        let flow = """
            flow: media
            trigger: { channel: whatsapp }
            start: picture
            blocks:
              picture:
                use: whatsapp.media
                with: { type: image, link: "https://clinic.example/map.png", caption: "Como chegar" }
                next: doc
              doc:
                use: whatsapp.media
                with: { type: document, id: "1013859600285441", filename: "receipt.pdf", caption: "Recibo" }
                next: template
              template:
                use: whatsapp.template
                with: { name: appointment_reminder, language: en_US, parameters: ["{{ contact.name ?? 'there' }}", "10:00"] }
                save: sent
                next: bad
              bad:
                use: whatsapp.template
                with: { name: unapproved, language: en_US }
                on_error: done
              done:
                end: "{{ error.reason }}"
            """
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let rig = try await RouterTests.Rig()
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/media", method: .put, headers: a, body: RouterTests.body(flow)) {
                    #expect(RouterTests.json($0)["valid"] == true)
                }
                try await client.execute(uri: "/v1/flows/media/publish", method: .post, headers: a)
                let path = try await Self.waChannel(client, rig, graph: fake.port!)
                let hi = Self.notification(#"{"from": "16505551234", "id": "wamid.m1", "timestamp": "1", "type": "text", "text": {"body": "oi"}}"#)
                try await client.execute(uri: path, method: .post, headers: Self.signed(hi), body: RouterTests.body(hi))
                try await rig.engine.drain()
                let sent = graph.messages
                try #require(sent.count == 4)
                #expect(sent[0]["type"] == "image" && sent[0]["image"]["link"] == "https://clinic.example/map.png" && sent[0]["image"]["caption"] == "Como chegar")
                #expect(sent[1]["document"]["id"] == "1013859600285441" && sent[1]["document"]["filename"] == "receipt.pdf")
                #expect(sent[2]["template"]["components"][0]["parameters"] == [["type": "text", "text": "Sheena"], ["type": "text", "text": "10:00"]])
                #expect(sent.allSatisfy { $0["to"] == "16505551234" })
                let conversation = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "16505551234").first)
                #expect(try await rig.store.messages(conversation: conversation.id, tenant: "a").last?.text == "whatsapp_132001",
                        "a template WhatsApp does not know goes to on_error with its Graph code")
            }
        }
        await rig.store.close()
    }

    /// Read receipts are outbox effects: queued once per message (a repeated notification queues nothing more),
    /// retried when the Graph fails them, and never in the way of the reply.
    @Test func readReceiptsAreQueuedOnceRetriedAndHoldUpNoReply() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let clock = APIChannelConnectorTests.Clock()
        let rig = try await RouterTests.Rig(clock: { clock.now })
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let path = try await Self.publishWithWhatsApp(client, rig: rig, graphPort: fake.port!)
                graph.readsFailing.withLock { $0 = true }
                let hi = Self.notification(#"{"from": "16505551234", "id": "wamid.r1", "timestamp": "1", "type": "text", "text": {"body": "oi"}}"#)
                for _ in 0..<2 {
                    try await client.execute(uri: path, method: .post, headers: Self.signed(hi), body: RouterTests.body(hi)) { #expect($0.status == .ok) }
                }
                try await rig.engine.drain()
                #expect(graph.messages.count == 1, "the reply went out while the receipt failed")
                #expect(graph.reads.withLock { $0 }.isEmpty)
                let pending = try await rig.store.deliveries(tenant: "a", state: .pending)
                #expect(pending.map(\.action) == ["channel.read"] && pending.first?.attempts == 1, "one receipt for two copies, to retry: \(pending)")

                graph.readsFailing.withLock { $0 = false }
                clock.advance(seconds: 120)
                try await rig.engine.drain()
                #expect(graph.reads.withLock { $0 } == ["wamid.r1"])
                #expect(try await rig.store.deliveries(tenant: "a", state: .pending).isEmpty)
            }
        }
        await rig.store.close()
    }

    /// A message the Graph accepted can still fail later with 131047 (the window had closed): it goes out again as
    /// the flow's template, once, and the failure is shown with the conversation.
    @Test func aLate131047SendsTheFlowsTemplateOnce() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let rig = try await RouterTests.Rig()
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/follow-up", method: .put, headers: a, body: RouterTests.body(Self.followUpFlow))
                try await client.execute(uri: "/v1/flows/follow-up/publish", method: .post, headers: a) { #expect($0.status == .created) }
                let path = try await Self.waChannel(client, rig, graph: fake.port!)
                let hi = Self.notification(#"{"from": "16505551234", "id": "wamid.in", "timestamp": "1", "type": "text", "text": {"body": "oi"}}"#)
                try await client.execute(uri: path, method: .post, headers: Self.signed(hi), body: RouterTests.body(hi))
                try await rig.engine.drain()
                try #require(graph.messages.count == 1)
                let failed = """
                    {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                      "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "statuses": [{"id": "wamid.fake.1", "status": "failed", "timestamp": "5", "recipient_id": "16505551234",
                                    "errors": [{"code": 131047, "title": "Re-engagement message"}]}]}}]}]}
                    """
                for _ in 0..<2 {
                    try await client.execute(uri: path, method: .post, headers: Self.signed(failed), body: RouterTests.body(failed)) { #expect($0.status == .ok) }
                }
                // Queued in the outbox with the status change, once for both copies: durable, and retried like any send.
                let queued = try await rig.store.deliveries(tenant: "a", state: .pending)
                #expect(queued.map(\.action) == ["whatsapp.template"], "\(queued)")
                try await rig.engine.drain()
                let sent = graph.messages
                try #require(sent.count == 2, "one template, for two copies of the status")
                #expect(sent[1]["type"] == "template" && sent[1]["template"]["name"] == "reengage")
                #expect(sent[1]["template"]["components"][0]["parameters"][0]["text"] == "Oi! Vou te lembrar amanhã.")
                let conversation = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "16505551234").first)
                let deliveries = try await rig.store.statuses(conversation: conversation.id, tenant: "a")
                #expect(deliveries.map(\.messageID) == ["wamid.fake.2", "wamid.fake.1"] || deliveries.map(\.messageID) == ["wamid.fake.1", "wamid.fake.2"])
                #expect(deliveries.first { $0.messageID == "wamid.fake.1" }?.errorCode == "131047")
            }
        }
        await rig.store.close()
    }
}
