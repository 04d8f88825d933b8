import Connectors
import Crypto
import FlowEngine
import FlowRuntime
import FlowVM
import FlowStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
@testable import Server
import FlowlineTestKit
import Testing

/// The suite every channel driver passes, run for each kind in `BuiltinChannels.all`: its declaration (the fields'
/// schemas say exactly what the driver accepts), and, for what the kind does, verify (a forged webhook is refused and
/// stores nothing), parse (a signed one reaches the inbox once), send (to the provider's fake on loopback), status
/// (a delivery report reaches the conversation) and window (a closed reply window sends the flow's template or
/// fails; a channel with none always sends). A new kind fails here until it has a fixture below.
@Suite struct ChannelConformanceTests {
    // MARK: Recording doubles of what the runtime gives a driver

    final class Inbox: ChannelInbox {
        let now = Timestamp(milliseconds: 1_780_000_000_000)
        let received = Mutex<[ReceivedMessage]>([])
        let queued = Mutex<[QueuedAction]>([])
        let statuses = Mutex<[(id: String, status: String, code: String?, followUp: QueuedAction?)]>([])
        let resumed = Mutex<[(event: String, key: String, providerID: String)]>([])
        /// What `updateStatus` finds kept for the message (what the send recorded).
        let fallback: Value

        init(fallback: Value = .null) { self.fallback = fallback }

        var touched: Bool {
            !received.withLock(\.isEmpty) || !queued.withLock(\.isEmpty) || !statuses.withLock(\.isEmpty) || !resumed.withLock(\.isEmpty)
        }

        func receive(_ message: ReceivedMessage) async throws -> ReceiveOutcome {
            received.withLock { r in
                defer { r.append(message) }
                return r.contains { $0.providerID == message.providerID } ? .duplicate : .accepted(conversation: "c1", started: r.isEmpty)
            }
        }

        func queue(_ actions: [QueuedAction]) async throws { queued.withLock { $0 += actions } }

        func updateStatus(providerID: String, status: String, errorCode: String?,
                          followUp: @escaping @Sendable (StatusChange) -> QueuedAction?) async throws -> StatusChange {
            let change = StatusChange(conversation: "c1", changed: true, fallback: fallback)
            statuses.withLock { $0.append((providerID, status, errorCode, followUp(change))) }
            return change
        }

        func resume(event: String, key: String, payload: Value, providerID: String) async throws -> Bool {
            resumed.withLock { $0.append((event, key, providerID)) }
            return true
        }
    }

    final class Store: ChannelStore {
        let now = Timestamp(milliseconds: 1_780_000_000_000)
        let contact: String
        let lastInbound: Timestamp?
        let template: Value
        let sent = Mutex<[(id: String, fallback: Value)]>([])

        init(contact: String = "16505551234", lastInbound: Timestamp?, template: Value = .null) {
            self.contact = contact
            self.lastInbound = lastInbound
            self.template = template
        }

        func lastInboundAt() async throws -> Timestamp? { lastInbound }
        func contactPhone(_ contact: String) async throws -> String? { nil }
        func recordSent(providerID: String, fallback: Value) async throws { sent.withLock { $0.append((providerID, fallback)) } }
        func flowSetting(_ name: String, program: String?) async throws -> Value { name == "whatsapp_template" ? template : .null }
        func history(limit: Int) async throws -> [(fromContact: Bool, text: String)] { [] }
        let tools: [ActionDefinition] = []
        func performTool(_ action: String, _ parameters: Value, _ context: ConnectorContext) async throws -> Value { .null }
    }

    // MARK: What each kind needs beyond its driver

    /// A provider's fake on loopback and how to read what it was sent.
    struct Provider {
        var url: String
        /// Each message the provider received: its kind of message (`text`, `template`…) and text.
        var delivered: @Sendable () -> [(type: String, text: String)]
    }

    /// The kind-specific half of the suite: an account, the provider's requests, and its fake.
    struct Fixture: Sendable {
        var account: @Sendable (_ providerURL: String) -> ChannelAccount
        /// A signed provider request carrying one contact message (id `m1`, text "hi") or event; and the same
        /// request signed with a wrong secret.
        var inbound: (@Sendable () -> WebhookRequest)?
        var forged: (@Sendable () -> WebhookRequest)?
        /// A signed delivery report: message `id` failed because the reply window had closed.
        var failedStatus: (@Sendable (_ id: String) -> WebhookRequest)?
        /// Runs `body` with the provider's fake on 127.0.0.1.
        var provider: (@Sendable (_ body: @Sendable (Provider) async throws -> Void) async throws -> Void)?
    }

    static let appSecret = "app-secret-0123", stripeSecret = "whsec_conformance"

    static func whatsApp(_ body: String, secret: String = appSecret) -> WebhookRequest {
        WebhookRequest(method: "POST", headers: ["X-Hub-Signature-256": EndToEndTests.hubSignature(body, secret: secret)], body: Array(body.utf8))
    }

    static func stripe(_ body: String, secret: String = stripeSecret, at time: Int64) -> WebhookRequest {
        WebhookRequest(method: "POST", headers: ["Stripe-Signature": FakeStripe.signature(body, secret: secret, time: time)], body: Array(body.utf8))
    }

    static let fixtures: [String: Fixture] = [
        "whatsapp": Fixture(
            account: { url in
                ChannelAccount(id: "ch_wa", tenant: "t1", kind: "whatsapp", config: ["phone_number_id": "106540352242922", "graph_url": .string(url)],
                               credentials: ["verify_token": "verify-me-please", "app_secret": .string(appSecret), "access_token": "EAAG-token-xyz"])
            },
            inbound: { whatsApp(WebhookRoutesTests.notification(#"{"from": "16505551234", "id": "m1", "timestamp": "1", "type": "text", "text": {"body": "hi"}}"#)) },
            forged: { whatsApp(WebhookRoutesTests.notification(#"{"from": "16505551234", "id": "m1", "timestamp": "1", "type": "text", "text": {"body": "hi"}}"#), secret: "not-the-secret") },
            failedStatus: { id in
                whatsApp("""
                    {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                      "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "statuses": [{"id": "\(id)", "status": "failed", "timestamp": "5", "recipient_id": "16505551234",
                                    "errors": [{"code": 131047, "title": "Re-engagement message"}]}]}}]}]}
                    """)
            },
            provider: { body in
                let graph = FakeGraphAPI(token: "EAAG-token-xyz")
                try await graph.app.test(.live) { fake in
                    try await body(Provider(url: "http://127.0.0.1:\(fake.port!)", delivered: {
                        graph.messages.map { m in (m["type"].text, m["type"] == "template" ? m["template"]["name"].text : m["text"]["body"].text) }
                    }))
                }
            }),
        "api": Fixture(
            account: { url in ChannelAccount(id: "ch_api", tenant: "t1", kind: "api", callbackURL: url + "/callback", signingSecret: "whsec_callback_secret") },
            provider: { body in
                let got = Mutex<[Value]>([])
                let router = Router()
                router.post("callback") { request, _ -> Response in
                    let bytes = try await request.body.collect(upTo: 1 << 20)
                    // As strict as a receiver that checks what the docs promise: a key to de-duplicate on, and a signature.
                    guard request.headers[HTTPField.Name("Idempotency-Key")!] != nil,
                          let signature = request.headers[HTTPField.Name("Flowline-Signature")!], signature.contains("v1=") else {
                        return Response(status: .badRequest)
                    }
                    got.withLock { $0.append(Value(json: String(buffer: bytes)) ?? .null) }
                    return Response(status: .ok)
                }
                try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { fake in
                    try await body(Provider(url: "http://127.0.0.1:\(fake.port!)", delivered: { got.withLock { $0.map { ("text", $0["text"].text) } } }))
                }
            }),
        "stripe": Fixture(
            account: { url in
                ChannelAccount(id: "ch_st", tenant: "t1", kind: "stripe", config: ["api_url": .string(url)],
                               credentials: ["secret_key": "sk_test_conformance", "webhook_secret": .string(stripeSecret)])
            },
            inbound: {
                stripe(#"{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1", "payment_status": "paid", "metadata": {"flowline_conversation": "c1"}}}}"#,
                       at: 1_780_000_000)
            },
            forged: {
                stripe(#"{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1", "payment_status": "paid"}}}"#,
                       secret: "whsec_wrong", at: 1_780_000_000)
            }),
        // Service kinds: what they do is their actions, tested against their peers in their own suites.
        "email": Fixture(account: { _ in ChannelAccount(id: "ch_em", tenant: "t1", kind: "email") }),
        "ai": Fixture(account: { _ in ChannelAccount(id: "ch_ai", tenant: "t1", kind: "ai") }),
        "n8n": Fixture(account: { _ in ChannelAccount(id: "ch_n8", tenant: "t1", kind: "n8n") }),
    ]

    static var kinds: [String] { BuiltinChannels.all.map(\.kind) }

    static func driver(_ kind: String) throws -> any ChannelDriver {
        try #require(BuiltinChannels.all.first { $0.kind == kind })
    }

    static func fixture(_ kind: String) throws -> Fixture {
        try #require(fixtures[kind], "the channel kind \(kind) has no conformance fixture: add one to ChannelConformanceTests.fixtures")
    }

    static func context() -> ConnectorContext {
        ConnectorContext(tenant: "t1", conversation: "c1", idempotencyKey: "c1:7", attempt: 1, deadline: .now + .seconds(10))
    }

    // MARK: Declaration

    /// Values of every form, good and bad, to hold each field's schema against what the driver accepts.
    static let probes: [Value] = [
        .null, "", "x", "abcdefgh", String(repeating: "k", count: 4097).asValue, "http://127.0.0.1:8080/hook", "https://api.example.com",
        "ftp://example.com", "not a url", "smtp.example.com", "10.0.0.1", "bad host!", 587, 0, 65536, 25.5, "587", "106540352242922",
        "12a", "starttls", "tls", "basic", "header", "a\u{1}b", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", true,
    ]

    @Test(arguments: kinds)
    func declaresFieldsWhoseSchemasSayWhatItAccepts(_ kind: String) throws {
        let driver = try Self.driver(kind)
        _ = try Self.fixture(kind)
        #expect(!driver.summary.isEmpty)
        #expect(Set(driver.fields.map(\.name)).count == driver.fields.count, "field names are unique")
        for field in driver.fields {
            #expect(!field.summary.isEmpty, "\(kind).\(field.name) says what it is")
            for probe in Self.probes where probe != .null {
                let accepted = field.problem(with: probe) == nil
                #expect(SchemaCheck.accepts(field.schema, probe) == accepted,
                        "\(kind).\(field.name): the schema and the driver disagree on \(probe.jsonText.prefix(60))")
            }
        }
        // A body without one required field names it; with all of them, it is valid and secrets are split from config.
        var body: [String: Value] = [:]
        for field in driver.fields { if let v = probe(for: field) { body[field.name] = v } }
        #expect(driver.problem(with: body) == nil, "a body of valid values is valid")
        for field in driver.fields where field.required {
            var missing = body
            missing[field.name] = nil
            #expect(driver.problem(with: missing)?.contains(field.name) == true, "\(kind) says \(field.name) is required")
        }
        let (secrets, config) = driver.split(body)
        #expect(Set(secrets.keys) == Set(driver.fields.filter(\.isSecret).map(\.name)))
        #expect(Set(config.keys) == Set(driver.fields.filter { !$0.isSecret }.map(\.name)))
        // Its actions are in the built-in catalog, checked by the compiler like any other.
        for action in driver.actions { #expect(BuiltinActions.catalog.actions[action.name] != nil, "\(action.name) is in the catalog") }
        if driver.replyWindow != nil { #expect(driver.carriesConversations, "a reply window is a conversation channel's") }
    }

    /// A valid value for a field, from the probes.
    func probe(for field: ChannelField) -> Value? { Self.probes.first { $0 != .null && field.problem(with: $0) == nil } }

    // MARK: Verify and parse

    @Test(arguments: kinds)
    func refusesForgedWebhooksAndTakesSignedOnesOnce(_ kind: String) async throws {
        let driver = try Self.driver(kind), fixture = try Self.fixture(kind)
        let account = fixture.account("http://127.0.0.1:9")
        guard driver.receivesWebhooks else {
            #expect(fixture.inbound == nil)
            let inbox = Inbox()
            await #expect(throws: WebhookRefusal.self) { try await driver.receive(WebhookRequest(method: "POST"), account: account, inbox: inbox) }
            #expect(!inbox.touched)
            return
        }
        let inbound = try #require(fixture.inbound, "a kind that takes webhooks has a signed sample")
        let forged = try #require(fixture.forged)

        let refused = Inbox()
        for request in [forged(), WebhookRequest(method: "POST", body: inbound().body)] {
            do {
                _ = try await driver.receive(request, account: account, inbox: refused)
                Issue.record("\(kind) took a webhook without a valid signature")
            } catch let refusal as WebhookRefusal {
                #expect(refusal.status == 401)
                #expect(!refusal.message.contains(Self.appSecret) && !refusal.message.contains(Self.stripeSecret))
            }
        }
        #expect(!refused.touched, "a refused webhook stores nothing")

        // Signed but not the provider's format: 400, nothing stored.
        let resigned = kind == "stripe" ? Self.stripe("{\"nope\": ", at: 1_780_000_000) : Self.whatsApp("{\"nope\": ")
        do {
            _ = try await driver.receive(resigned, account: account, inbox: refused)
            Issue.record("\(kind) took a body that is not its provider's")
        } catch let refusal as WebhookRefusal {
            #expect(refusal.status == 400)
        }
        #expect(!refused.touched)

        let inbox = Inbox()
        let first = try await driver.receive(inbound(), account: account, inbox: inbox)
        let again = try await driver.receive(inbound(), account: account, inbox: inbox)
        #expect(first.status == 200 && again.status == 200, "a repeat is acknowledged, so the provider stops sending it")
        if driver.carriesConversations {
            let received = inbox.received.withLock { $0 }
            #expect(received.count == 2 && received.allSatisfy { $0.providerID == "m1" && $0.message.text == "hi" && $0.contact == "16505551234" },
                    "the message reaches the inbox with its provider id, which de-duplicates the repeat")
        } else {
            #expect(inbox.resumed.withLock { $0.first?.providerID } == "stripe:evt_1", "the event resumes what waits on it, keyed by its id")
        }
    }

    // MARK: Send, status and window

    @Test(arguments: kinds)
    func sendsThroughTheProviderAndKeepsItsReplyWindow(_ kind: String) async throws {
        let driver = try Self.driver(kind), fixture = try Self.fixture(kind)
        guard driver.carriesConversations else {
            let store = Store(lastInbound: nil)
            await #expect(throws: ConnectorError.self) {
                try await driver.send(["message": ["text": "hi"]], account: fixture.account("http://127.0.0.1:9"), context: Self.context(), store: store)
            }
            return
        }
        let provider = try #require(fixture.provider, "a conversation channel has a provider fake")
        try await provider { p in
            let account = fixture.account(p.url)
            let send: Value = ["channel": .string(account.id), "contact": "16505551234", "message": ["text": "Olá"], "program": "abc"]
            let template: Value = ["name": "follow_up", "language": "pt_BR"]

            // Within the window (or on a channel without one): the message itself.
            let open = Store(lastInbound: Timestamp(milliseconds: 1_780_000_000_000 - 60_000), template: template)
            _ = try await driver.send(send, account: account, context: Self.context(), store: open)
            #expect(p.delivered().last?.type == "text" && p.delivered().last?.text == "Olá")

            // A month after the contact last wrote.
            let longAgo = Timestamp(milliseconds: 1_780_000_000_000 - 30 * 86_400_000)
            let closed = Store(lastInbound: longAgo, template: template)
            _ = try await driver.send(send, account: account, context: Self.context(), store: closed)
            if let window = driver.replyWindow {
                #expect(window > 0)
                #expect(p.delivered().last?.type == "template" && p.delivered().last?.text == "follow_up",
                        "past the window the flow's template goes out instead")
                let bare = Store(lastInbound: longAgo)
                await #expect(throws: ConnectorError.self, "with no template to send, a send past the window fails") {
                    try await driver.send(send, account: account, context: Self.context(), store: bare)
                }
            } else {
                #expect(p.delivered().last?.type == "text", "a channel without a reply window always sends")
            }
            // A contact who never wrote (a conversation the business started): no window was ever open.
            if driver.replyWindow != nil {
                _ = try await driver.send(send, account: account, context: Self.context(), store: Store(lastInbound: nil, template: template))
                #expect(p.delivered().last?.type == "template", "a contact who never wrote gets the template")
            }
            #expect(p.delivered().count == (driver.replyWindow == nil ? 2 : 3))

            // What the provider says later about a sent message reaches the conversation.
            guard let failedStatus = fixture.failedStatus else { return }
            let sentID = try #require(open.sent.withLock { $0.first?.id }, "a sent message is recorded by the provider's id")
            #expect(open.sent.withLock { $0.first?.fallback["name"] } == "follow_up", "the template to send if it is refused later is kept")
            let inbox = Inbox(fallback: open.sent.withLock { $0[0].fallback })
            _ = try await driver.receive(failedStatus(sentID), account: account, inbox: inbox)
            let status = try #require(inbox.statuses.withLock { $0.first })
            #expect(status.id == sentID && status.status == "failed")
            #expect(status.followUp?.payload["name"] == "follow_up", "refused late because the window had closed: the template is queued")
        }
    }
}

/// The JSON Schema keywords channel fields use, checked the way a validator would: enough to hold a field's schema
/// against the driver's own check.
enum SchemaCheck {
    static func accepts(_ schema: Value, _ value: Value) -> Bool {
        var types: [String] = []
        if case .string(let t) = schema["type"] { types = [t] } else if case .list(let l) = schema["type"] { types = l.map(\.text) }
        let typeName: String = switch value {
        case .null: "null"
        case .string: "string"
        case .bool: "boolean"
        case .number(let n): n == n.rounded() ? "integer" : "number"
        default: "object"
        }
        guard types.isEmpty || types.contains(typeName) || (typeName == "integer" && types.contains("number")) else { return false }
        if case .list(let options) = schema["enum"], !options.contains(value) { return false }
        if case .string(let s) = value {
            let count = s.unicodeScalars.count
            if case .number(let min) = schema["minLength"], count < Int(min) { return false }
            if case .number(let max) = schema["maxLength"], count > Int(max) { return false }
            if case .string(let pattern) = schema["pattern"] {
                let regex = pattern.replacingOccurrences(of: #"\u0000"#, with: #"\x{0000}"#).replacingOccurrences(of: #"\u001f"#, with: #"\x{001f}"#)
                    .replacingOccurrences(of: #"\u007f"#, with: #"\x{007f}"#).replacingOccurrences(of: #"\u009f"#, with: #"\x{009f}"#)
                guard let r = try? NSRegularExpression(pattern: regex),
                      r.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil else { return false }
            }
        }
        if case .number(let n) = value {
            if case .number(let min) = schema["minimum"], n < min { return false }
            if case .number(let max) = schema["maximum"], n > max { return false }
        }
        return true
    }
}

extension String {
    fileprivate var asValue: Value { .string(self) }
}

/// A kind of channel is one driver and one registration line: this one, registered beside the built-in kinds, is
/// created, validated, documented, receives its webhook and carries a conversation through the real router and engine.
@Suite struct CustomChannelKindTests {
    /// A made-up provider: it posts `{"from", "id", "text"}` with its token in `X-Echo-Token`, and takes replies.
    struct EchoChannel: ChannelDriver {
        let kind = "echo"
        let summary = "A test provider"
        let fields = [
            ChannelField("token", .secret(min: 8), required: true, summary: "what the provider's posts carry"),
            ChannelField("number", .digits, required: true, summary: "the account's number"),
        ]
        let carriesConversations = true
        let receivesWebhooks = true
        let sent: Sent

        func receive(_ request: WebhookRequest, account: ChannelAccount, inbox: any ChannelInbox) async throws -> WebhookResponse {
            guard let token = request.headers["x-echo-token"], token == account.credentials["token"].text else {
                throw WebhookRefusal(401, "wrong token")
            }
            guard let m = Value(json: String(decoding: request.body, as: UTF8.self)), case .string(let from) = m["from"] else {
                throw WebhookRefusal(400, "not an echo message")
            }
            let outcome = try await inbox.receive(ReceivedMessage(contact: from, providerID: m["id"].text, message: InboundMessage(text: m["text"].text)))
            return .json(["duplicate": .bool(outcome == .duplicate)])
        }

        func send(_ parameters: Value, account: ChannelAccount, context: ConnectorContext, store: any ChannelStore) async throws -> Value {
            sent.list.withLock { $0.append("\(account.config["number"].text)→\(store.contact): \(parameters["message"]["text"].text)") }
            return ["id": .string(context.idempotencyKey)]
        }
    }

    final class Sent: Sendable { let list = Mutex<[String]>([]) }

    @Test func aKindOfOnesOwnIsCreatedDocumentedAndCarriesAConversation() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-echo-\(UUID().uuidString).db").path
        let store = try await SQLStore.open("sqlite:\(path)")
        try await store.migrate()
        let sent = Sent()
        let echo = EchoChannel(sent: sent)
        let channels = Channels(drivers: BuiltinChannels.all + [echo], store: store, secrets: RouterTests.secrets)
        let connectors = Runtime.connectors(channels: channels)
        let engine = Engine(store: store, connectors: connectors, logger: RouterTests.quietLogger)
        try await store.ensureTenant(id: "a", name: "a")
        let admin = try await APIKeys.create(store: store, tenant: "a", role: .admin, label: "a").key
        let router = FlowlineServer.router(store: store, engine: engine, catalog: Runtime.catalog(connectors, channels: channels),
                                           secrets: RouterTests.secrets, channels: channels)
        try await Application(router: router, logger: RouterTests.quietLogger).test(.router) { client in
            let a = RouterTests.auth(admin)
            // Documented from its declaration.
            try await client.execute(uri: "/v1/channels/kinds", method: .get, headers: a) { r in
                let kinds = RouterTests.json(r)["kinds"]
                guard case .list(let list) = kinds, let mine = list.first(where: { $0["kind"] == "echo" }) else {
                    Issue.record("echo is not listed")
                    return
                }
                #expect(mine["fields"][0]["name"] == "token" && mine["fields"][0]["secret"] == true && mine["conversations"] == true)
            }
            let document = try await client.execute(uri: "/openapi.json", method: .get) { RouterTests.json($0) }
            let schema = document["paths"]["/v1/channels"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            #expect(schema["properties"]["kind"]["enum"].jsonText.contains("\"echo\""))
            #expect(schema["properties"]["number"]["pattern"] == "^[0-9]{1,32}$")
            var rules: [Value] = []
            if case .list(let list) = schema["allOf"] { rules = list }
            #expect(rules.contains { $0["if"]["properties"]["kind"]["const"] == "echo" && $0["then"]["required"] == ["token", "number"] })
            #expect(rules.contains { $0["then"]["properties"]["number"]["not"]["type"] == "null" }, "a required field may not be null either")
            // Validated from its declaration.
            try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                     body: RouterTests.body(#"{"kind": "echo", "name": "e", "token": "echo-token-1"}"#)) { r in
                #expect(r.status == .badRequest && RouterTests.json(r)["detail"].text.contains("number"))
            }
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(
                #"{"kind": "echo", "name": "e", "token": "echo-token-1", "number": "5511"}"#)) { r in
                #expect(r.status == .created)
                return RouterTests.json(r)
            }
            #expect(channel["number"] == "5511" && channel["token"] == .null, "settings are shown, secrets never")
            let hook = channel["webhook_path"].text
            #expect(hook == "/webhooks/echo/\(channel["id"].text)")

            try await client.execute(uri: "/v1/flows/echo-hello", method: .put, headers: a, body: RouterTests.body("""
                flow: echo-hello
                trigger: { channel: echo }
                start: hi
                blocks:
                  hi:
                    end: "Hello from echo"
                """)) { #expect($0.status == .ok || $0.status == .created) }
            try await client.execute(uri: "/v1/flows/echo-hello/publish", method: .post, headers: a) { #expect($0.status == .created) }

            let message = #"{"from": "ana", "id": "e-1", "text": "hi"}"#
            try await client.execute(uri: hook, method: .post, body: RouterTests.body(message)) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: hook, method: .post, headers: [HTTPField.Name("X-Echo-Token")!: "echo-token-1"],
                                     body: RouterTests.body(message)) { r in
                #expect(r.status == .ok && RouterTests.json(r)["duplicate"] == false)
            }
            // A method a route does not take is a 405 naming the methods of the route the path is, not of every route
            // it could be: a resume link is POST only, though `/webhooks/{kind}/{id}` takes GET too.
            try await client.execute(uri: "/webhooks/resume/x.y", method: .options) { r in
                #expect(r.status == .methodNotAllowed && r.headers[.allow] == "POST")
            }
            try await client.execute(uri: hook, method: .delete) { r in
                #expect(r.status == .methodNotAllowed && r.headers[.allow] == "GET, POST")
            }
            // The route takes GET for the kinds whose handshake is one; this kind's webhook is POST only, as it declares.
            try await client.execute(uri: hook, method: .get) { r in
                #expect(r.status == .methodNotAllowed && r.headers[.allow] == "POST")
            }
            var kindsByMethod: [String: Value] = [:]
            for method in ["get", "post"] {
                if case .list(let parameters) = document["paths"]["/webhooks/{kind}/{id}"][method]["parameters"] {
                    kindsByMethod[method] = parameters.first { $0["name"] == "kind" }?["schema"]["enum"]
                }
            }
            #expect(kindsByMethod["get"] == ["whatsapp"] && kindsByMethod["post"] == ["whatsapp", "stripe", "echo"], "\(kindsByMethod)")
            // Another kind's path for the same channel is not it.
            try await client.execute(uri: "/webhooks/whatsapp/\(channel["id"].text)", method: .post, body: RouterTests.body(message)) {
                #expect($0.status == .notFound)
            }
            try await engine.drain()
            #expect(sent.list.withLock { $0 } == ["5511→ana: Hello from echo"], "the reply went out through the kind's own driver")
        }
        await store.close()
    }
}
