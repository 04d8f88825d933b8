import CRMConnector
import Connectors
import FlowCompiler
import FlowEngine
import FlowRuntime
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import FlowlineTestKit
import Testing

/// The example custom connector against a fake CRM on 127.0.0.1, alone and through the engine.
@Suite struct CRMConnectorTests {
    /// A CRM: Ana (gold) by phone, Bruno by email; `busy` is rate-limited, `down` fails, `slow` takes 6 s.
    static var crm: some ApplicationProtocol {
        let router = Router()
        router.get("customers") { request, _ -> Response in
            guard request.headers[.authorization] == "Bearer crm-key" else { return Response(status: .unauthorized) }
            let phone = request.uri.queryParameters["phone"].map(String.init)
            let email = request.uri.queryParameters["email"].map(String.init)
            func json(_ s: String) -> Response {
                Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: s)))
            }
            switch (phone, email) {
            case ("5511", _): return json(#"{"id": "c-1", "name": "Ana", "tier": "gold"}"#)
            case (_, "bruno@example.com"): return json(#"{"id": "c-2", "name": "Bruno", "tier": "silver"}"#)
            case ("busy", _): return Response(status: .tooManyRequests, headers: [HTTPField.Name("Retry-After")!: "7"])
            case ("down", _): return Response(status: .internalServerError)
            case ("slow", _):
                try await Task.sleep(for: .seconds(6))
                return json(#"{"id": "c-3"}"#)
            default: return Response(status: .notFound)
            }
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func context(_ timeout: Duration = .seconds(5)) -> ConnectorContext {
        ConnectorContext(tenant: "t1", conversation: "c1", idempotencyKey: "c1:1", attempt: 1, deadline: .now + timeout)
    }

    static func error(_ body: () async throws -> Value) async -> ConnectorError? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? ConnectorError
        }
    }

    @Test func looksUpByPhoneOrEmailAndMapsEveryAnswer() async throws {
        try await Self.crm.test(.live) { client in
            let crm = CRMConnector(baseURL: "http://127.0.0.1:\(client.port!)/", apiKey: "crm-key")
            let ana = try await crm.perform(action: "crm.lookup", parameters: ["phone": "5511"], context: Self.context())
            #expect(ana == ["found": true, "id": "c-1", "name": "Ana", "tier": "gold"])
            let bruno = try await crm.perform(action: "crm.lookup", parameters: ["email": "bruno@example.com"], context: Self.context())
            #expect(bruno["tier"] == "silver")
            let nobody = try await crm.perform(action: "crm.lookup", parameters: ["phone": "000"], context: Self.context())
            #expect(nobody["found"] == false)

            let busy = await Self.error { try await crm.perform(action: "crm.lookup", parameters: ["phone": "busy"], context: Self.context()) }
            #expect(busy?.retryable == true && busy?.retryAfter == 7)
            let down = await Self.error { try await crm.perform(action: "crm.lookup", parameters: ["phone": "down"], context: Self.context()) }
            #expect(down?.retryable == true && down?.code == "crm_500")
            let slow = await Self.error {
                try await crm.perform(action: "crm.lookup", parameters: ["phone": "slow"], context: Self.context(.milliseconds(200)))
            }
            #expect(slow?.code == "unreachable" && slow?.retryable == true, "the context's deadline bounds the call")
            let empty = await Self.error { try await crm.perform(action: "crm.lookup", parameters: [:], context: Self.context()) }
            #expect(empty?.retryable == false)

            let wrongKey = CRMConnector(baseURL: "http://127.0.0.1:\(client.port!)", apiKey: "sk-wrong-secret")
            let denied = await Self.error { try await wrongKey.perform(action: "crm.lookup", parameters: ["phone": "5511"], context: Self.context()) }
            #expect(denied?.code == "crm_401" && denied?.retryable == false, "a wrong key is not retried")
            #expect(denied.map { !"\($0)".contains("sk-wrong-secret") } == true, "the key never reaches an error")
        }
        let closed = ClosedPort()
        let nowhere = CRMConnector(baseURL: closed.url, apiKey: "crm-key")
        let refused = await Self.error { try await nowhere.perform(action: "crm.lookup", parameters: ["phone": "5511"], context: Self.context(.seconds(1))) }
        #expect(refused?.code == "unreachable" && refused?.retryable == true)
    }

    static let flow = """
        flow: vip
        trigger: { channel: api }
        start: lookup
        blocks:
          lookup:
            use: crm.lookup
            with: { phone: "{{ contact.phone }}" }
            save: customer
            on_error: sorry
            next:
              - when: customer.found and customer.tier == "gold"
                goto: gold
              - goto: regular
          gold:
            end: "Welcome back, {{ customer.name }}: a gold line is yours."
          regular:
            end: "Hello! How can we help?"
          sorry:
            end: "We cannot look you up right now."
        """

    @Test func aFlowUsesTheCustomActionCheckedAgainstItsSchema() async throws {
        try await Self.crm.test(.live) { client in
            let registry = ConnectorRegistry([CRMConnector(baseURL: "http://127.0.0.1:\(client.port!)", apiKey: "crm-key"),
                                              Recorder()])
            let compiler = FlowCompiler(catalog: registry.catalog(adding: BuiltinActions.catalog))
            #expect(compiler.compile(source: Self.flow, file: "vip.yaml").diagnostics.isEmpty)
            let typo = compiler.compile(source: Self.flow.replacingOccurrences(of: "{ phone:", with: "{ phnoe:"), file: "vip.yaml")
            #expect(typo.hasErrors, "parameters are checked against the connector's own schema")
            #expect(FlowCompiler(catalog: BuiltinActions.catalog).compile(source: Self.flow, file: "vip.yaml").hasErrors,
                    "without the connector registered, crm.lookup is unknown")

            let path = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-crm-\(UUID().uuidString).db").path
            let store = try await SQLStore.open("sqlite:\(path)")
            try await store.migrate()
            try await store.ensureTenant(id: "t1", name: "t1")
            var configuration = Engine.Configuration()
            // Generous for the fast calls on a loaded CI machine (500 ms was missed), well under the slow one's 6 s.
            configuration.connectorTimeout = .seconds(2)
            let engine = Engine(store: store, connectors: registry, configuration: configuration)
            _ = try await engine.publish(tenant: "t1", program: try compiler.program(source: Self.flow, file: "vip.yaml"), source: Self.flow)
            for (contact, id) in [("5511", "m1"), ("777", "m2"), ("slow", "m3")] {
                _ = try await engine.ingest(Inbound(tenant: "t1", channel: "api", channelKind: "api", contact: contact, contactName: nil,
                                                    providerID: id, message: InboundMessage(text: "hi")))
            }
            try await engine.drain()
            func replies(_ contact: String) async throws -> [String] {
                let c = try await store.conversations(tenant: "t1", status: nil, contact: contact)
                return try await store.messages(conversation: c[0].id, tenant: "t1").filter { $0.direction == .outbound }.map(\.text)
            }
            #expect(try await replies("5511") == ["Welcome back, Ana: a gold line is yours."])
            #expect(try await replies("777") == ["Hello! How can we help?"])
            #expect(try await replies("slow") == [], "a call past the deadline is retried later, not answered")
            let pending = try await store.deliveries(tenant: "t1", state: .pending)
            // The engine's deadline and the HTTP client's (the same instant) race: either ends the call, retryably.
            #expect(pending.count == 1 && pending[0].lastError.map { $0.hasPrefix("timeout") || $0.hasPrefix("unreachable") } == true,
                    "\(pending.map(\.lastError))")
            await store.close()
        }
    }

    /// Takes the flow's sends.
    /// As a channel kind, each tenant looks customers up in its own CRM with its own key: the same flow finds Ana for
    /// the tenant whose key the CRM takes, and ends at `on_error` for the one whose key it refuses (a 401 is not retried).
    @Test func asAChannelKindEachTenantUsesItsOwnAccount() async throws {
        try await Self.crm.test(.live) { client in
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-crm-\(UUID().uuidString).db").path
            let store = try await SQLStore.open("sqlite:\(path)")
            try await store.migrate()
            let secrets = try SecretBox(base64: SecretBox.generateKey())
            let channels = Channels(drivers: BuiltinChannels.all + [CRMChannel()], store: store, secrets: secrets)
            let crm = try #require(channels["crm"])
            #expect(crm.problem(with: ["base_url": "http://127.0.0.1:1"])?.contains("api_key") == true, "the key is required")
            for (tenant, key) in [("t1", "crm-key"), ("t2", "sk-wrong-secret")] {
                try await store.ensureTenant(id: tenant, name: tenant)
                var record = ChannelRecord(id: "crm-\(tenant)", tenant: tenant, kind: "crm", name: "crm", callbackURL: nil, createdAt: Timestamp(milliseconds: 0))
                let (sealed, config) = crm.split(["base_url": .string("http://127.0.0.1:\(client.port!)"), "api_key": .string(key)])
                record.config = .map(config)
                record.sealedSecret = try secrets.seal(Value.map(sealed).jsonText, context: record.secretContext)
                try await store.insertChannel(record)
            }
            let registry = Runtime.connectors(channels: channels, custom: [Recorder()])
            let compiler = FlowCompiler(catalog: Runtime.catalog(registry, channels: channels))
            let engine = Engine(store: store, connectors: registry)
            let program = try compiler.program(source: Self.flow, file: "vip.yaml")
            for tenant in ["t1", "t2"] {
                _ = try await engine.publish(tenant: tenant, program: program, source: Self.flow)
                _ = try await engine.ingest(Inbound(tenant: tenant, channel: "api", channelKind: "api", contact: "5511", providerID: "m-\(tenant)",
                                                    message: InboundMessage(text: "hi")))
            }
            try await engine.drain()
            func replies(_ tenant: String) async throws -> [String] {
                let c = try await store.conversations(tenant: tenant, status: nil, contact: "5511")
                return try await store.messages(conversation: c[0].id, tenant: tenant).filter { $0.direction == .outbound }.map(\.text)
            }
            #expect(try await replies("t1") == ["Welcome back, Ana: a gold line is yours."])
            #expect(try await replies("t2") == ["We cannot look you up right now."], "the other tenant's key is its own, and refused")
            await store.close()
        }
    }

    struct Recorder: Connector {
        let definitions = [ActionDefinition.channelSend]
        func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value { ["sent": true] }
    }
}
