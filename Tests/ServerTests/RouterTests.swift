import FlowEngine
import FlowRuntime
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing
import Connectors
import FlowlineTestKit
import Crypto
import Logging
import Metrics
import Prometheus

/// Every route through the router: happy paths, auth failures, roles and cross-tenant attempts (all 404).
@Suite struct RouterTests {
    struct Rig {
        let store: SQLStore
        let engine: Engine
        let app: Application<RouterResponder<FlowlineRequestContext>>
        let adminA: String, agentA: String, adminB: String

        init(backend: Backend = .sqlite, clock: (@Sendable () -> Timestamp)? = nil, secrets: SecretBox? = RouterTests.secrets,
             logger: Logger = RouterTests.quietLogger, limiter: WorkLimiter = WorkLimiter(), people: PeopleSettings = PeopleSettings()) async throws {
            // Sign-ins by the hundred in one test process: a cost that keeps them from starving the tests that time the server.
            People.useCost(4)
            store = try await backend.makeStore()
            let connectors = if let clock { Runtime.connectors(store: store, secrets: secrets, clock: clock) }
                             else { Runtime.connectors(store: store, secrets: secrets) }
            var configuration = Engine.Configuration()
            // Resume links name a host the tests never call: fakes post to the server under test instead.
            if let secrets { configuration.resumeLinks = ResumeLinks(baseURL: "http://flowline.invalid", secrets: secrets) }
            configuration.secrets = secrets
            engine = if let clock { Engine(store: store, connectors: connectors, configuration: configuration, logger: logger, clock: clock) }
                     else { Engine(store: store, connectors: connectors, configuration: configuration, logger: logger) }
            for t in ["a", "b"] { try await store.ensureTenant(id: t, name: t) }
            adminA = try await APIKeys.create(store: store, tenant: "a", role: .admin, label: "a").key
            agentA = try await APIKeys.create(store: store, tenant: "a", role: .agent, label: "agent").key
            adminB = try await APIKeys.create(store: store, tenant: "b", role: .admin, label: "b").key
            app = Application(router: FlowlineServer.router(store: store, engine: engine, catalog: BuiltinActions.catalog,
                                                            secrets: secrets, metrics: RouterTests.metrics, limiter: limiter, people: people),
                              logger: logger)
        }
    }

    static let flow = """
        flow: hello
        trigger: { channel: api }
        start: ask
        blocks:
          ask:
            ask: "Name?"
            save: name
            next: human
          human:
            handoff: { queue: sales, message: "An agent will answer" }
            next: bye
          bye:
            end: "Bye {{ name }}"
        """

    static let secrets = SecretBox(key: .init(size: .bits256))

    /// Request logs are for operators; tests keep warnings and errors.
    static let quietLogger: Logger = {
        var logger = Logger(label: "flowline.test")
        logger.logLevel = .warning
        return logger
    }()

    /// One Prometheus registry for the test process: swift-metrics can be bootstrapped once.
    static let metrics: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    static func body(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }

    static func json(_ r: TestResponse) -> Value { Value(json: String(buffer: r.body)) ?? .null }

    static func auth(_ key: String) -> HTTPFields { [.authorization: "Bearer \(key)"] }

    @Test func healthAndReadinessNeedNoKey() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/ready", method: .get) { #expect(Self.json($0)["status"] == "ready") }
        }
        await rig.store.close()
    }

    @Test func everyV1RouteNeedsAValidKey() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            for (uri, method) in [("/v1/flows", HTTPRequest.Method.get), ("/v1/conversations", .get), ("/v1/keys", .get),
                                  ("/v1/blocks", .get), ("/v1/channels", .post), ("/v1/flows/x", .put)] {
                try await client.execute(uri: uri, method: method) { r in
                    #expect(r.status == .unauthorized, "\(method) \(uri)")
                    #expect(r.headers[.contentType] == "application/problem+json")
                    #expect(Self.json(r)["type"] == "unauthorized")
                }
                for bad in ["Bearer nope", "Bearer fl_abc_def", "Basic Zm9vOmJhcg==", "Bearer " + rig.adminA + "x"] {
                    try await client.execute(uri: uri, method: method, headers: [.authorization: bad]) { r in
                        #expect(r.status == .unauthorized, "\(bad) on \(uri)")
                    }
                }
            }
        }
        await rig.store.close()
    }

    @Test func flowsDraftValidatePublishAndVersions() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow)) { r in
                #expect(r.status == .created)
                #expect(Self.json(r)["valid"] == true)
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/flows/hello", method: .get, headers: a) { r in
                #expect(Self.json(r)["source"] == .string(Self.flow))
            }
            var yaml = a
            yaml[.accept] = "application/yaml"
            try await client.execute(uri: "/v1/flows/hello", method: .get, headers: yaml) { r in
                #expect(r.headers[.contentType] == "application/yaml")
                #expect(String(buffer: r.body) == Self.flow)
            }
            // The builder's graph form: read it, move a node, write it back, read the same graph.
            var graphAccept = a
            graphAccept[.accept] = "application/vnd.flowline.graph+json"
            let graph = try await client.execute(uri: "/v1/flows/hello", method: .get, headers: graphAccept) { r in
                #expect(r.headers[.contentType] == "application/vnd.flowline.graph+json")
                return Self.json(r)
            }
            #expect(graph["edges"] == [["from": "ask", "port": "next", "to": "human"], ["from": "human", "port": "next", "to": "bye"]])
            guard case .map(var g) = graph, case .list(var nodes) = g["nodes"], case .map(var first) = nodes[0] else {
                Issue.record("graph shape")
                return
            }
            first["position"] = ["x": 40, "y": 80]
            nodes[0] = .map(first)
            g["nodes"] = .list(nodes)
            var graphPut = a
            graphPut[.contentType] = "application/vnd.flowline.graph+json"
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: graphPut, body: Self.body(Value.map(g).jsonText)) { r in
                #expect(r.status == .ok)
                #expect(Self.json(r)["valid"] == true)
            }
            try await client.execute(uri: "/v1/flows/hello", method: .get, headers: graphAccept) { r in
                #expect(Self.json(r) == .map(g), "positions included, nothing lost")
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            let broken = Self.flow.replacingOccurrences(of: "next: human", with: "next: humn")
            try await client.execute(uri: "/v1/flows/hello/validate", method: .post, headers: a, body: Self.body(broken)) { r in
                let d = Self.json(r)["diagnostics"][0]
                #expect(d["code"] == "unknown-block")
                #expect(d["block"] == "ask")
                #expect(d["line"] == 8)
                #expect(d["path"] == "/blocks/ask/next", "the field a builder marks")
            }
            // Saved in the graph form, a diagnostic names the field of the node's params it is about.
            var tooLong = g
            if case .list(var ns) = tooLong["nodes"], case .map(var n) = ns[0] {
                n["params"] = ["ask": "pick one", "save": "name", "buttons": ["yes", "a button title much too long"]]
                ns[0] = .map(n)
                tooLong["nodes"] = .list(ns)
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: graphPut, body: Self.body(Value.map(tooLong).jsonText)) { r in
                let d = Self.json(r)["diagnostics"]
                #expect(d[0]["code"] == "button-too-long" && d[1] == .null, "only the long button is wrong: \(d)")
                #expect(d[0]["path"] == "/blocks/ask/buttons/1")
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a) { r in
                #expect(r.status == .created)
                #expect(Self.json(r)["version"] == 1)
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(broken)) { r in
                #expect(Self.json(r)["valid"] == false)
            }
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a) { r in
                #expect(r.status == .conflict, "publishing a flow with errors is refused")
                #expect(Self.json(r)["type"] == "invalid_flow")
                #expect(Self.json(r)["diagnostics"][0]["code"] == "unknown-block")
            }
            try await client.execute(uri: "/v1/flows/hello/versions", method: .get, headers: a) { r in
                #expect(Self.json(r)["versions"][0]["version"] == 1)
            }
            let v2 = Self.flow.replacingOccurrences(of: "Name?", with: "Your name?")
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(v2))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a) { #expect(Self.json($0)["version"] == 2) }
            try await client.execute(uri: "/v1/flows/hello/diff?from=1&to=2", method: .get, headers: a) { r in
                guard case .list(let lines) = Self.json(r)["lines"] else {
                    Issue.record("no diff")
                    return
                }
                #expect(lines.filter { $0.text.hasPrefix("-") || $0.text.hasPrefix("+") }
                        == [.string(#"-     ask: "Name?""#), .string(#"+     ask: "Your name?""#)])
            }
            try await client.execute(uri: "/v1/flows/hello/rollback", method: .post, headers: a, body: Self.body(#"{"version": 1}"#)) { r in
                #expect(r.status == .created)
                #expect(Self.json(r)["version"] == 3)
            }
            try await client.execute(uri: "/v1/flows/hello/diff?from=1&to=3", method: .get, headers: a) { r in
                #expect(Self.json(r)["same_program"] == true)
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            try await client.execute(uri: "/v1/flows/other", method: .put, headers: a, body: Self.body(Self.flow)) { r in
                #expect(r.status == .conflict, "the URL and the document must name the same flow")
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: Self.auth(rig.agentA), body: Self.body(Self.flow)) { r in
                #expect(r.status == .forbidden)
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a,
                                     body: Self.body(String(repeating: "x", count: 600 * 1024))) { r in
                #expect(r.status == .contentTooLarge)
                #expect(Self.json(r)["type"] == "too_large")
            }
        }
        await rig.store.close()
    }

    @Test func aConversationOverTheAPIChannelWithAHandoff() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a)
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: Self.body(#"{"kind": "api", "name": "web"}"#)) { r in
                #expect(r.status == .created)
                return Self.json(r)["id"].text
            }
            let conversation = try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                                        body: Self.body(#"{"from": "5511", "text": "hi", "id": "m1"}"#)) { r in
                #expect(r.status == .accepted)
                #expect(Self.json(r)["status"] == "started")
                return Self.json(r)["conversation"].text
            }
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: Self.body(#"{"from": "5511", "text": "hi", "id": "m1"}"#)) { r in
                #expect(Self.json(r)["status"] == "duplicate")
            }
            try await rig.engine.drain()
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: Self.body(#"{"from": "5511", "text": "Bia", "id": "m2"}"#))
            try await rig.engine.drain()
            try await client.execute(uri: "/v1/conversations?status=handoff", method: .get, headers: Self.auth(rig.agentA)) { r in
                #expect(Self.json(r)["conversations"][0]["id"] == .string(conversation))
            }
            try await client.execute(uri: "/v1/inbox?queue=sales", method: .get, headers: Self.auth(rig.agentA)) { r in
                #expect(Self.json(r)["conversations"][0]["id"] == .string(conversation))
                #expect(Self.json(r)["conversations"][0]["agent"] == .null)
            }
            try await client.execute(uri: "/v1/inbox?queue=support", method: .get, headers: Self.auth(rig.agentA)) { r in
                #expect(Self.json(r)["conversations"] == .list([]))
            }
            try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: Self.auth(rig.agentA)) { r in
                #expect(r.status == .ok)
            }
            try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: a) { r in
                #expect(r.status == .conflict, "another agent has it")
            }
            try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: Self.auth(rig.agentA),
                                     body: Self.body(#"{"text": "Hi Bia, Carla here."}"#)) { r in
                #expect(r.status == .accepted)
            }
            try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: Self.auth(rig.adminB),
                                     body: Self.body(#"{"text": "hijack"}"#)) { r in
                #expect(r.status == .notFound)
            }
            try await client.execute(uri: "/v1/conversations/\(conversation)/handback", method: .post, headers: Self.auth(rig.agentA)) { r in
                #expect(r.status == .accepted)
            }
            try await rig.engine.drain()
            try await client.execute(uri: "/v1/conversations/\(conversation)/messages", method: .get, headers: a) { r in
                let messages = Self.json(r)["messages"]
                guard case .list(let list) = messages else {
                    Issue.record("no messages")
                    return
                }
                #expect(list.map { $0["direction"].text } == ["in", "out", "in", "out", "out", "out"])
                #expect(list.map { $0["text"].text } == ["hi", "Name?", "Bia", "An agent will answer", "Hi Bia, Carla here.", "Bye Bia"])
            }
            try await client.execute(uri: "/v1/conversations/\(conversation)", method: .get, headers: a) { r in
                let c = Self.json(r)
                #expect(c["status"] == "ended")
                guard case .list(let trace) = c["trace"] else {
                    Issue.record("no trace")
                    return
                }
                #expect(trace.map { $0["visited"] } == [["ask"], ["human"], ["bye"]])
            }
            try await client.execute(uri: "/v1/conversations/\(conversation)/handback", method: .post, headers: a) { r in
                #expect(r.status == .conflict)
            }
            // The live stream replays from a cursor: every message and turn of this tenant, in order.
            // The limit is above what exists, so the stream ends by its timeout and an extra event would be counted.
            let ids = try await client.execute(uri: "/v1/events?after=0-0&limit=50&timeout=1", method: .get, headers: Self.auth(rig.agentA)) { r in
                #expect(r.headers[.contentType] == "text/event-stream")
                let text = String(buffer: r.body)
                #expect(text.components(separatedBy: "event: message").count - 1 == 6)
                #expect(text.components(separatedBy: "event: turn").count - 1 == 3, "the three traced turns")
                #expect(text.contains(#""status":"handoff""#))
                return text.split(separator: "\n").filter { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) }
            }
            #expect(ids.count == 9)
            // Resumed from the third event's cursor, by Last-Event-ID (what EventSource sends) or ?after=: the six after it.
            if ids.count == 9 {
                var resume = Self.auth(rig.agentA)
                resume[HTTPField.Name("Last-Event-ID")!] = ids[2]
                for (uri, headers) in [("/v1/events?limit=50&timeout=1", resume), ("/v1/events?after=\(ids[2])&limit=50&timeout=1", Self.auth(rig.agentA))] {
                    try await client.execute(uri: uri, method: .get, headers: headers) { r in
                        let got = String(buffer: r.body).split(separator: "\n").filter { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) }
                        #expect(got == Array(ids[3...]), "\(uri)")
                    }
                }
            }
            try await client.execute(uri: "/v1/events?after=0-0&limit=50&timeout=1", method: .get, headers: Self.auth(rig.adminB)) { r in
                #expect(!String(buffer: r.body).contains("event:"), "another tenant's stream is empty")
            }
        }
        await rig.store.close()
    }

    @Test func anotherTenantsObjectsAreNotFound() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA), b = Self.auth(rig.adminB)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a)
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: Self.body(#"{"kind": "api", "name": "web"}"#)) { Self.json($0)["id"].text }
            let conversation = try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                                        body: Self.body(#"{"from": "1", "text": "hi", "id": "x"}"#)) { Self.json($0)["conversation"].text }
            try await rig.engine.drain()
            let keyA = try await client.execute(uri: "/v1/keys", method: .get, headers: a) { Self.json($0)["keys"][0]["id"].text }
            for (uri, method) in [
                ("/v1/flows/hello", HTTPRequest.Method.get), ("/v1/flows/hello/publish", .post), ("/v1/flows/hello/versions", .get),
                ("/v1/channels/\(channel)/inbound", .post), ("/v1/conversations/\(conversation)", .get),
                ("/v1/conversations/\(conversation)/messages", .get), ("/v1/conversations/\(conversation)/cancel", .post),
                ("/v1/conversations/\(conversation)/retry", .post), ("/v1/keys/\(keyA)", .delete),
            ] {
                try await client.execute(uri: uri, method: method, headers: b,
                                         body: Self.body(#"{"from": "1", "text": "hi", "id": "y"}"#)) { r in
                    #expect(r.status == .notFound, "B's key on \(method) \(uri)")
                }
            }
            try await client.execute(uri: "/v1/conversations", method: .get, headers: b) { r in
                #expect(Self.json(r)["total"] == 0)
            }
            try await client.execute(uri: "/v1/flows", method: .get, headers: b) { r in #expect(Self.json(r)["flows"] == .list([])) }
            try await client.execute(uri: "/v1/channels", method: .get, headers: b) { r in #expect(Self.json(r)["channels"] == .list([])) }

            // A's things, read again with A's key, are as they were: B's 404s changed nothing behind them.
            try await rig.engine.drain()
            try await client.execute(uri: "/v1/flows/hello/versions", method: .get, headers: a) { r in
                #expect(Self.json(r)["versions"].jsonText.components(separatedBy: "\"version\"").count - 1 == 1, "still one version")
            }
            try await client.execute(uri: "/v1/conversations/\(conversation)", method: .get, headers: a) { r in
                #expect(Self.json(r)["status"] == "waiting", "not cancelled")
            }
            try await client.execute(uri: "/v1/conversations/\(conversation)/messages", method: .get, headers: a) { r in
                #expect(Self.json(r)["messages"].jsonText.components(separatedBy: "\"in\"").count - 1 == 1, "B's inbound was not stored")
            }
            try await client.execute(uri: "/v1/keys", method: .get, headers: a) { r in
                #expect(Self.json(r)["keys"][0]["revoked"] == false, "A's key is not revoked")
            }
            try await client.execute(uri: "/v1/flows", method: .get, headers: a) { r in #expect(Self.json(r)["total"] == 1) }
        }
        await rig.store.close()
    }

    @Test func everyListPagesWithLimitAndOffset() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            for name in ["w1", "w2", "w3"] {
                try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                         body: Self.body(#"{"kind": "api", "name": "\#(name)"}"#)) { #expect($0.status == .created) }
            }
            for name in ["b", "c", "a"] {
                try await client.execute(uri: "/v1/flows/\(name)", method: .put, headers: a,
                                         body: Self.body(Self.flow.replacingOccurrences(of: "flow: hello", with: "flow: \(name)")))
            }
            try await client.execute(uri: "/v1/flows/c/publish", method: .post, headers: a)
            let pages: [(String, String, [String: Value])] = [
                ("/v1/channels?limit=2", "channels", ["total": 3]),
                ("/v1/channels?limit=2&offset=2", "channels", ["total": 3]),
                ("/v1/flows?limit=2&offset=1", "flows", ["total": 3]),
                ("/v1/keys?limit=1", "keys", ["total": 2]),
                ("/v1/conversations?limit=5", "conversations", ["total": 0]),
                ("/v1/inbox?offset=3", "conversations", ["total": 0]),
            ]
            var seen: [String: [Value]] = [:]
            for (uri, key, expected) in pages {
                try await client.execute(uri: uri, method: .get, headers: a) { r in
                    #expect(r.status == .ok, "\(uri)")
                    let body = Self.json(r)
                    #expect(body["total"] == expected["total"], "\(uri)")
                    if case .list(let items) = body[key] { seen[uri] = items }
                }
            }
            #expect(seen["/v1/channels?limit=2"]?.map { $0["name"] } == ["w1", "w2"])
            #expect(seen["/v1/channels?limit=2&offset=2"]?.map { $0["name"] } == ["w3"])
            #expect(seen["/v1/flows?limit=2&offset=1"]?.map { $0["name"] } == ["b", "c"])
            #expect(seen["/v1/flows?limit=2&offset=1"]?.last?["latest_version"] == 1)
            #expect(seen["/v1/keys?limit=1"]?.count == 1)
            for bad in ["/v1/flows?limit=0", "/v1/keys?limit=501", "/v1/channels?offset=-1", "/v1/inbox?limit=x"] {
                try await client.execute(uri: bad, method: .get, headers: a) { r in
                    #expect(r.status == .badRequest, "\(bad)")
                }
            }
        }
        await rig.store.close()
    }

    @Test func keysAreShownOnceListedByPrefixAndRevocable() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            let created = try await client.execute(uri: "/v1/keys", method: .post, headers: a,
                                                   body: Self.body(#"{"role": "supervisor", "label": "builder"}"#)) { r in
                #expect(r.status == .created)
                return Self.json(r)
            }
            let key = created["key"].text
            #expect(key.hasPrefix("fl_\(created["prefix"].text)_"))
            try await client.execute(uri: "/v1/keys", method: .get, headers: a) { r in
                let text = String(buffer: r.body)
                #expect(!text.contains(key), "the full key is never listed")
                #expect(text.contains(created["prefix"].text))
            }
            try await client.execute(uri: "/v1/flows", method: .get, headers: Self.auth(key)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/keys", method: .get, headers: Self.auth(key)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/keys/\(created["id"].text)", method: .delete, headers: a) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/v1/flows", method: .get, headers: Self.auth(key)) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/keys", method: .post, headers: a, body: Self.body(#"{"role": "root"}"#)) {
                #expect($0.status == .badRequest)
            }
        }
        let stored = try await rig.store.apiKeys(tenant: "a")
        #expect(stored.items.allSatisfy { $0.hash.count == 64 }, "keys are stored as SHA-256 digests")
        #expect(try await rig.store.auditLog(tenant: "a").map(\.action) == ["key.create", "key.revoke"])
        await rig.store.close()
    }

    @Test func catalogListsBlocksAndActionSchemas() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/v1/blocks", method: .get, headers: Self.auth(rig.agentA)) { r in
                let v = Self.json(r)
                guard case .list(let blocks) = v["blocks"], case .list(let actions) = v["actions"] else {
                    Issue.record("catalog shape")
                    return
                }
                #expect(blocks.count == 14)
                #expect(actions.contains { $0["name"] == "stripe.checkout" && $0["parameters"]["required"] == ["amount", "currency", "description"] })
                // The channel's limits are in the schema a form is drawn from, and each port names its place in the block.
                let ask = blocks.first { $0["type"] == "ask" } ?? .null
                #expect(ask["params"]["properties"]["buttons"]["maxItems"] == 3)
                #expect(ask["params"]["properties"]["buttons"]["items"]["anyOf"][0]["maxLength"] == 20)
                #expect(ask["params"]["properties"]["list"]["properties"]["rows"]["maxItems"] == 10)
                #expect(ask["port_paths"] == ["next": "/next", "branch": "/next", "on_invalid": "/on_invalid", "timeout": "/timeout/next", "on_error": "/on_error"])
                #expect(blocks.first { $0["type"] == "wait_for" }?["port_paths"]["timeout"] == "/wait_for/on_timeout")
            }
        }
        await rig.store.close()
    }

    @Test func badBodiesAreClearProblems() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            for body in ["not json", "[1]", #"{"kind": "whatsapp", "name": "x"}"#, #"{"kind": "api"}"#,
                         #"{"kind": "api", "name": "x", "callback_url": "ftp://x"}"#] {
                try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: Self.body(body)) { r in
                    #expect(r.status == .badRequest, "\(body)")
                    #expect(Self.json(r)["detail"] != .null)
                }
            }
            try await client.execute(uri: "/v1/nothing", method: .get, headers: a) { r in
                #expect(r.status == .notFound)
                #expect(r.headers[.contentType] == "application/problem+json")
            }
            try await client.execute(uri: "/v1/conversations?status=sleeping", method: .get, headers: a) { #expect($0.status == .badRequest) }
        }
        await rig.store.close()
    }

    @Test func simulateRunsTheDraftWithoutSendingAnything() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            try await client.execute(uri: "/v1/flows/hello/simulate", method: .post, headers: a,
                                     body: Self.body(#"{"inputs": ["hi", "Bia", "/handback"]}"#)) { r in
                #expect(r.status == .ok)
                let expected = ["bot: Name?", "you: hi", "bot: An agent will answer", "handoff: queue sales", "you: Bia",
                                "note: the flow is not waiting for that", "you: /handback", "bot: Bye hi", "end: the flow finished"]
                #expect(Self.json(r)["transcript"] == .list(expected.map(Value.string)))
                #expect(Self.json(r)["finished"] == true)
                #expect(Self.json(r)["visited"] == ["ask", "human", "bye"] && Self.json(r)["current"] == .null, "\(Self.json(r)["visited"])")
            }
            // Part way: the block it waits in is the current one.
            try await client.execute(uri: "/v1/flows/hello/simulate", method: .post, headers: a, body: Self.body(#"{"inputs": ["hi"]}"#)) { r in
                #expect(Self.json(r)["current"] == "human" && Self.json(r)["finished"] == false)
            }
        }
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/v1/flows/hello/simulate", method: .post, headers: Self.auth(rig.adminA),
                                     body: Self.body(#"{"now": "5173-11-15T11:35:40.576439-15:11"}"#)) { r in
                #expect(r.status == .ok, "RFC 3339 times with microseconds and odd offsets are times")
            }
        }
        #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: nil).isEmpty)
        await rig.store.close()
    }

    @Test func theOpenAPIDocumentListsExactlyTheRoutes() async throws {
        let rig = try await Rig()
        let router = FlowlineServer.router(store: rig.store, engine: rig.engine, catalog: BuiltinActions.catalog, secrets: nil, metrics: Self.metrics)
        // The Studio's pages and files are HTML and scripts for browsers, not the API the document describes.
        let served = Set(router.routes.filter { !StudioRoutes.serves($0.path.description) }.map { r in
            "\(r.method.rawValue.lowercased()) " + r.path.description.split(separator: "/").map { part in
                part.hasPrefix(":") ? "{\(part.dropFirst())}" : String(part)
            }.joined(separator: "/")
        }.map { $0.replacingOccurrences(of: " ", with: " /") })
        guard case .map(let paths) = Value(json: String(decoding: openAPIDocument, as: UTF8.self))?["paths"] ?? .null else {
            Issue.record("the document has no paths")
            return
        }
        var documented = Set<String>()
        for (path, item) in paths {
            if case .map(let ops) = item { for method in ops.keys { documented.insert("\(method) \(path)") } }
        }
        #expect(served == documented, "served but undocumented: \(served.subtracting(documented)); documented but not served: \(documented.subtracting(served))")
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { r in
                #expect(r.status == .ok)
                #expect(Self.json(r)["openapi"] == "3.1.0")
            }
        }
        await rig.store.close()
    }

    @Test func thePlatformKeyCreatesTenantsAndSeesNoTenantData() async throws {
        let rig = try await Rig()
        try await rig.store.ensureTenant(id: "_platform", name: "Platform")
        let platform = try await APIKeys.create(store: rig.store, tenant: "_platform", role: .platform, label: "p").key
        try await rig.app.test(.router) { client in
            let created = try await client.execute(uri: "/v1/tenants", method: .post, headers: Self.auth(platform),
                                                   body: Self.body(#"{"id": "clinic-1", "name": "Clínica 1"}"#)) { r in
                #expect(r.status == .created)
                return Self.json(r)
            }
            try await client.execute(uri: "/v1/flows", method: .get, headers: Self.auth(created["admin_key"].text)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/tenants", method: .post, headers: Self.auth(platform), body: Self.body(#"{"id": "clinic-1"}"#)) {
                #expect($0.status == .conflict)
            }
            try await client.execute(uri: "/v1/tenants", method: .post, headers: Self.auth(rig.adminA), body: Self.body(#"{"id": "x2"}"#)) {
                #expect($0.status == .forbidden, "an admin of one tenant cannot create tenants")
            }
            try await client.execute(uri: "/v1/keys", method: .get, headers: Self.auth(platform)) { #expect($0.status == .forbidden) }
            // Everywhere but POST /v1/tenants the platform key is refused, not shown an empty tenant of its own.
            for (uri, method) in [("/v1/conversations", HTTPRequest.Method.get), ("/v1/flows", .get), ("/v1/channels", .get),
                                  ("/v1/inbox", .get), ("/v1/blocks", .get)] {
                try await client.execute(uri: uri, method: method, headers: Self.auth(platform)) { r in
                    #expect(r.status == .forbidden, "\(method) \(uri)")
                    #expect(Self.json(r)["detail"].text.contains("only create tenants"))
                }
            }
            try await client.execute(uri: "/v1/flows/x", method: .put, headers: Self.auth(platform), body: Self.body("flow: x")) {
                #expect($0.status == .forbidden)
            }
            try await client.execute(uri: "/v1/keys", method: .post, headers: Self.auth(rig.adminA), body: Self.body(#"{"role": "platform"}"#)) {
                #expect($0.status == .badRequest, "platform keys are not handed out by tenants")
            }
        }
        await rig.store.close()
    }

    /// The value of the series `name` (with its labels, as written) in Prometheus text, 0 when absent.
    static func metric(_ text: String, _ name: String) -> Double {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.dropFirst(name.count + 1)) } ?? 0
    }

    @Test func metricsCountTurnsDeliveriesAndRequests() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            // Other tests in this process count into the same registry: what this one does is a lower bound of the deltas.
            let before = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a)
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: Self.body(#"{"kind": "api", "name": "m"}"#)) { Self.json($0)["id"].text }
            for i in 0..<3 {
                try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                         body: Self.body(#"{"from": "9\#(i)", "text": "hi", "id": "metrics-\#(i)"}"#))
            }
            try await rig.engine.drain()
            try await BacklogSampler(store: rig.store, engine: rig.engine, ready: Gate()).sample()
            try await client.execute(uri: "/metrics", method: .get) { r in
                #expect(r.status == .ok)
                let text = String(buffer: r.body)
                let turns = Self.metric(text, "flowline_turns_total") - Self.metric(before, "flowline_turns_total")
                #expect(turns >= 3, "three conversations' first turns: \(turns)")
                let done = #"flowline_deliveries_total{outcome="done"}"#
                #expect(Self.metric(text, done) - Self.metric(before, done) >= 3, "three questions sent")
                for gauge in ["flowline_backlog", "flowline_outbox_pending", "flowline_turns_due", "flowline_dead_letters"] {
                    #expect(text.split(separator: "\n").contains { $0.hasPrefix(gauge + " ") && Double($0.dropFirst(gauge.count + 1)) != nil }, "\(gauge)")
                }
                #expect(Self.metric(text, "flowline_turn_batch_duration_count") > Self.metric(before, "flowline_turn_batch_duration_count"))
                #expect(text.contains("hb_requests"))
            }
        }
        await rig.store.close()
    }

    @Test func aDraftNeverPublishedIsDeletedAPublishedFlowStays() async throws {
        let rig = try await Rig()
        try await rig.app.test(.router) { client in
            let a = Self.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: Self.body(Self.flow)) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/flows/draft", method: .put, headers: a, body: Self.body(Self.flow.replacingOccurrences(of: "flow: hello", with: "flow: draft")))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/flows/draft", method: .delete, headers: Self.auth(rig.agentA)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/flows/draft", method: .delete, headers: Self.auth(rig.adminB)) { #expect($0.status == .notFound, "another tenant's") }
            try await client.execute(uri: "/v1/flows/hello", method: .delete, headers: a) { #expect($0.status == .conflict) }
            try await client.execute(uri: "/v1/flows/draft", method: .delete, headers: a) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/v1/flows/draft", method: .delete, headers: a) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v1/flows", method: .get, headers: a) { r in
                #expect(Self.json(r)["flows"] == [["name": "hello", "latest_version": 1]])
            }
        }
        #expect(try await rig.store.auditLog(tenant: "a").contains { $0.action == "flow.delete" && $0.subject == "draft" })
        await rig.store.close()
    }
}
