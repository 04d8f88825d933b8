import AsyncHTTPClient
import Connectors
import Crypto
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import FlowlineTestKit
import Testing

/// The whole product on PostgreSQL, through a real `flowline serve` process and every peer: a signed WhatsApp
/// webhook starts a flow that sends buttons, takes the reply, creates a Stripe Checkout Session, resumes on the
/// signed Stripe event, emails a receipt over SMTP (aiosmtpd) and starts an n8n workflow that calls back through
/// its resume link. The server is killed (SIGKILL) twice: once while Stripe's answer is in flight (the retry gets
/// Stripe's replay: two attempts, one session), once right after the payment event. Each effect reaches its peer
/// once, or, where the second kill caught it between its call and its done mark, once more under the same key.
@Suite struct EndToEndTests {
    static let flow = """
        flow: e2e-clinic
        trigger: { channel: whatsapp }
        start: menu
        blocks:
          menu:
            ask: "Quer agendar uma consulta?"
            buttons: [Sim, Não]
            save: choice
            next:
              - when: choice == "Sim"
                goto: pay
              - goto: bye
          pay:
            use: stripe.checkout
            with: { amount: 15000, currency: brl, description: "Consulta" }
            save: checkout
            next: link
          link:
            text: "Pague aqui: {{ checkout.url }}"
            next: wait_pay
          wait_pay:
            wait_for: { event: stripe.paid, match: checkout.id, timeout: 1d, on_timeout: bye }
            save: payment
            next: receipt
          receipt:
            use: email.send
            with: { to: "{{ payment.email }}", subject: "Recibo", text: "Pagamento de {{ payment.amount }} recebido." }
            next: crm
          crm:
            use: n8n.trigger
            with: { webhook: new-patient, data: { amount: "{{ payment.amount }}" }, wait: callback }
            save: job
            next: wait_crm
          wait_crm:
            wait_for: { event: resume, match: job.resume_token, timeout: 1h, on_timeout: bye }
            save: crm
            next: done
          done:
            end: "Tudo certo! Ficha {{ crm.record }}."
          bye:
            end: "Até logo!"
        """

    static func whatsApp(_ messages: String) -> String {
        """
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
          "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
          "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511999990000", "user_id": "BR.e2e"}], "messages": [\(messages)]}}]}]}
        """
    }

    /// `X-Hub-Signature-256` as Meta computes it: `sha256=` and the hex HMAC-SHA256 of the raw body under the app secret.
    static func hubSignature(_ body: String, secret: String = "app-secret-e2e") -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    @Test func aWhatsAppConversationPaysGetsAReceiptAndCallsN8NOnceThroughTwoCrashes() async throws {
        let base = try Peer.value("FLOWLINE_TEST_POSTGRES_URL")
        let smtp = try SMTPClientTests.Peer()
        guard FileManager.default.isExecutableFile(atPath: ServeProcess.binary) else {
            Issue.record("build flowline first: \(ServeProcess.binary) is missing")
            return
        }
        let database = try await SQLStore.createPostgresDatabase(nextTo: base, prefix: "e2e_")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/flows", withIntermediateDirectories: true)
        let log = dir + "/serve.log"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let secretKey = SecretBox.generateKey()
        let email = "e2e-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        // A kill leaves what it had leased for the lease: 12 s here, so the test waits seconds, not a minute, and a
        // connector call (half the lease) is not timed out while the rest of the suite loads the machine (at 6 s a
        // loaded run timed a WhatsApp send out and sent it a third time).
        let environment = ["FLOWLINE_DELIVERY_LEASE": "12"]

        let graph = FakeGraphAPI(token: "EAAG-e2e-token")
        let stripe = FakeStripe()
        let n8n = FakeN8N([FakeN8N.Workflow(path: "new-patient", callback: { body in ["record": "R-1", "amount": body["amount"]] })])
        try await graph.app.test(.live) { graphPeer in
            try await stripe.app.test(.live) { stripePeer in
                try await n8n.app.test(.live) { n8nPeer in
                    var serve = try await ServeProcess(database: database, log: log, secretKey: secretKey, flows: dir + "/flows", environment: environment)
                    var killed: [ServeProcess] = []
                    defer { serve.stop() }
                    func restart() async throws {
                        serve.kill()
                        #expect(serve.wasKilled)
                        killed.append(serve)
                        serve = try await ServeProcess(database: database, log: log, secretKey: secretKey, flows: dir + "/flows", environment: environment)
                        // Resume links name the public URL; n8n calls back to wherever the server listens now.
                        n8n.callbackBase.withLock { $0 = serve.api.base }
                    }
                    n8n.callbackBase.withLock { $0 = serve.api.base }
                    let api = { serve.api }

                    // Set-up through the API: the flow, and the tenant's four accounts.
                    #expect(try await api().call(.PUT, "/v1/flows/e2e-clinic", Self.flow, headers: [("Content-Type", "application/yaml")]).body["valid"] == true)
                    #expect(try await api().call(.POST, "/v1/flows/e2e-clinic/publish").status == 201)
                    let channels: [Value] = [
                        ["kind": "whatsapp", "name": "wa", "phone_number_id": "106540352242922", "verify_token": "verify-e2e-token",
                         "app_secret": "app-secret-e2e", "access_token": "EAAG-e2e-token", "graph_url": .string("http://127.0.0.1:\(graphPeer.port!)")],
                        ["kind": "stripe", "name": "pay", "secret_key": .string(stripe.key), "webhook_secret": "whsec_e2e_secret",
                         "api_url": .string("http://127.0.0.1:\(stripePeer.port!)"), "success_url": "https://clinic.example/ok"],
                        ["kind": "email", "name": "mail", "host": "localhost", "port": .number(Double(smtp.starttls)), "from": "clinic@example.com",
                         "username": "flowline", "password": "s3cret-pass", "ca_certificate": .string(smtp.ca)],
                        ["kind": "n8n", "name": "automations", "base_url": .string("http://127.0.0.1:\(n8nPeer.port!)")],
                    ]
                    var paths: [String: String] = [:]
                    for c in channels {
                        let (status, body) = try await api().call(.POST, "/v1/channels", c.jsonText)
                        #expect(status == 201, "\(body)")
                        paths[c["kind"].text] = body["webhook_path"].text
                    }

                    // A signed WhatsApp message starts the flow: the question goes out with its buttons.
                    let hi = Self.whatsApp(#"{"from": "5511999990000", "id": "wamid.e2e.1", "timestamp": "1", "type": "text", "text": {"body": "oi"}}"#)
                    #expect(try await api().call(.POST, paths["whatsapp"]!, hi, headers: [("X-Hub-Signature-256", Self.hubSignature(hi))], auth: false).status == 200)
                    _ = try await Peers.eventually("the buttons reach WhatsApp", seconds: 60) { graph.messages.count == 1 ? true : nil }
                    #expect(graph.messages[0]["interactive"]["action"]["buttons"][0]["reply"]["title"] == "Sim")
                    #expect(graph.messages[0]["recipient"] == "BR.e2e" && graph.messages[0]["to"] == "5511999990000")

                    // The reply asks Stripe for a Checkout Session. Crash 1: killed while Stripe's answer is in flight.
                    stripe.hold()
                    let yes = Self.whatsApp("""
                        {"from": "5511999990000", "id": "wamid.e2e.2", "timestamp": "2", "type": "interactive",
                         "interactive": {"type": "button_reply", "button_reply": {"id": "Sim", "title": "Sim"}}}
                        """)
                    #expect(try await api().call(.POST, paths["whatsapp"]!, yes, headers: [("X-Hub-Signature-256", Self.hubSignature(yes))], auth: false).status == 200)
                    _ = try await Peers.eventually("the session request is in flight", seconds: 60) { stripe.held == 1 ? true : nil }
                    try await restart()
                    stripe.release()
                    // The restarted server retries the call after its lease, under the same key: Stripe replays its answer.
                    let link = try await Peers.eventually("the payment link reaches WhatsApp", seconds: 60) {
                        graph.messages.last.flatMap { $0["text"]["body"].text.hasPrefix("Pague aqui") ? $0["text"]["body"].text : nil }
                    }
                    let attempts = stripe.attempts.withLock { $0 }
                    // Two attempts, or more when a retry outlives its 3 s connector timeout on a loaded machine: all under one
                    // key, every one after the first Stripe's replay of it.
                    #expect(attempts.count >= 2 && Set(attempts.compactMap(\.idempotencyKey)).count == 1 && attempts.allSatisfy { $0.idempotencyKey != nil },
                            "attempts under one key: \(attempts)")
                    #expect(attempts.map(\.replayed) == [false] + Array(repeating: true, count: attempts.count - 1), "the later ones are replays of the first")
                    #expect(stripe.created.withLock { $0.count } == 1, "one Checkout Session")
                    let session = try #require(link.components(separatedBy: "/pay/").last)
                    #expect(stripe.created.withLock { $0.first?.id } == session)

                    // The signed Stripe event, then crash 2 at once, before the receipt and n8n are surely done.
                    let event = stripe.completed(session, eventID: "evt_e2e_paid", email: email)
                    let signature = FakeStripe.signature(event, secret: "whsec_e2e_secret")
                    let paid = try await api().call(.POST, paths["stripe"]!, event, headers: [("Stripe-Signature", signature)], auth: false)
                    #expect(paid.status == 200 && paid.body["resumed"] == true)
                    try await restart()
                    // Stripe sends an event again when unsure it arrived: it resumes nothing the second time.
                    let again = try await api().call(.POST, paths["stripe"]!, event, headers: [("Stripe-Signature", signature)], auth: false)
                    #expect(again.status == 200 && again.body["resumed"] == false)

                    _ = try await Peers.eventually("the last message reaches WhatsApp", seconds: 60) {
                        graph.messages.contains { $0["text"]["body"] == "Tudo certo! Ficha R-1." } ? true : nil
                    }
                    let (_, conversations) = try await api().call(.GET, "/v1/conversations?contact=BR.e2e")
                    #expect(conversations["total"] == 1 && conversations["conversations"][0]["status"] == "ended", "\(conversations)")

                    // Each effect once at its peer, or once more under the same key where crash 2 caught it between its
                    // call and its done mark: never two different copies, never a third.
                    func atMostOneRepeat(_ what: String, _ keyed: [(key: String, content: String)], distinct: Int) {
                        let keys = Dictionary(grouping: keyed, by: \.key)
                        #expect(keys.count == distinct, "\(what): \(keyed.map(\.key))")
                        #expect(keyed.count <= distinct + 1, "\(what): at most one repeat in all")
                        for (key, copies) in keys {
                            #expect(copies.count <= 2 && Set(copies.map(\.content)).count == 1, "\(what) \(key): a repeat is the same message")
                        }
                    }
                    let whatsapp = graph.messages.map { (key: $0["biz_opaque_callback_data"].text, content: $0.jsonText) }
                    atMostOneRepeat("WhatsApp", whatsapp, distinct: 3)
                    var seen: Set<String> = []
                    let firsts = graph.messages.filter { seen.insert($0["biz_opaque_callback_data"].text).inserted }
                    #expect(firsts.map { $0["type"].text } == ["interactive", "text", "text"])
                    #expect(firsts.last?["text"]["body"] == "Tudo certo! Ficha R-1.")

                    let (mail, envelope) = try await smtp.received(email)
                    #expect(mail.contains("Pagamento de 15000 recebido.") && envelope["user"] == "flowline")
                    let receipts = try FileManager.default.contentsOfDirectory(atPath: smtp.spool).filter { $0.hasSuffix(".eml") }.compactMap { file -> (key: String, content: String)? in
                        guard let text = try? String(contentsOfFile: smtp.spool + "/" + file, encoding: .utf8), text.contains(email) else { return nil }
                        let id = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("message-id:") }.map(String.init) ?? ""
                        return (id, text.components(separatedBy: "\r\n\r\n").dropFirst().joined())
                    }
                    atMostOneRepeat("the receipt", receipts, distinct: 1)
                    #expect(receipts.allSatisfy { !$0.key.isEmpty }, "every copy carries its Message-ID")

                    let calls = n8n.received.withLock { $0 }
                    atMostOneRepeat("n8n", calls.map { (key: $0.headers[HTTPField.Name("Idempotency-Key")!] ?? "", content: $0.body["amount"].jsonText) }, distinct: 1)
                    #expect(calls.first?.body["amount"] == 15000)
                    let callbacks = n8n.callbacks.withLock { $0.map(\.status) }
                    #expect(callbacks.filter { $0 == 202 }.count == 1, "its callback resumed the conversation once: \(callbacks)")
                    #expect(killed.allSatisfy { $0.wasKilled })
                    if firsts.count != 3 || stripe.created.withLock({ $0.count }) != 1 {
                        Issue.record(Comment(rawValue: "server log:\n" + String(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(3000))))
                    }
                }
            }
        }
    }
}
