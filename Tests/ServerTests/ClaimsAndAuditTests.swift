import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing

/// A claim means something: only the agent holding a handed-off conversation writes to it, a supervisor transfers
/// it or takes it over; and the audit log says who did each of these, in which request.
@Suite struct ClaimsAndAuditTests {
    /// A conversation of tenant a, handed off to the `sales` queue.
    static func handedOff(_ client: some TestClientProtocol, _ rig: RouterTests.Rig) async throws -> String {
        let a = RouterTests.auth(rig.adminA)
        try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: RouterTests.body(RouterTests.flow))
        try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a)
        let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                               body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0)["id"].text }
        let conversation = try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                                    body: RouterTests.body(#"{"from": "5511", "text": "hi", "id": "m1"}"#)) { RouterTests.json($0)["conversation"].text }
        try await rig.engine.drain()
        try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                 body: RouterTests.body(#"{"from": "5511", "text": "Bia", "id": "m2"}"#))
        try await rig.engine.drain()
        return conversation
    }

    @Test(arguments: Backend.available)
    func onlyTheHolderWritesAndASupervisorTransfers(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        let (second, secondKey) = try await APIKeys.create(store: rig.store, tenant: "a", role: .agent, label: "second")
        let (supervisor, supervisorKey) = try await APIKeys.create(store: rig.store, tenant: "a", role: .supervisor, label: "lead")
        let firstID = try #require(try await rig.store.apiKeys(tenant: "a").items.first { $0.label == "agent" }?.id)
        try await rig.app.test(.router) { client in
            let conversation = try await Self.handedOff(client, rig)
            func write(_ key: String, _ text: String) async throws -> HTTPResponse.Status {
                try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: RouterTests.auth(key),
                                         body: RouterTests.body(#"{"text": "\#(text)"}"#)) { $0.status }
            }
            func holder() async throws -> Value {
                try await client.execute(uri: "/v1/inbox", method: .get, headers: RouterTests.auth(rig.agentA)) { RouterTests.json($0)["conversations"][0]["agent"] }
            }
            // Writing to a conversation nobody holds takes it.
            #expect(try await write(rig.agentA, "Oi Bia") == .accepted)
            #expect(try await holder() == .string(firstID))
            // Nobody else writes to it or claims it, not even a supervisor, until it is transferred.
            #expect(try await write(second, "me too") == .conflict)
            #expect(try await write(supervisor, "lead here") == .conflict)
            try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: RouterTests.auth(second)) { #expect($0.status == .conflict) }
            // An agent cannot transfer; a supervisor can, to a key of this tenant only.
            try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(rig.agentA),
                                     body: RouterTests.body(#"{"agent": "\#(secondKey.id)"}"#)) { #expect($0.status == .forbidden) }
            let otherTenantsKey = try #require(try await rig.store.apiKeys(tenant: "b").items.first?.id)
            for bad in ["nope", otherTenantsKey] {
                try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(supervisor),
                                         body: RouterTests.body(#"{"agent": "\#(bad)"}"#)) { #expect($0.status == .badRequest, "\(bad)") }
            }
            try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(supervisor),
                                     body: RouterTests.body(#"{"agent": "\#(secondKey.id)"}"#)) { r in
                #expect(r.status == .ok && RouterTests.json(r)["agent"] == .string(secondKey.id))
            }
            #expect(try await write(rig.agentA, "still me?") == .conflict)
            #expect(try await write(second, "Carla here") == .accepted)
            // Taking it over: no agent named.
            try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(supervisor),
                                     body: RouterTests.body("{}")) { #expect(RouterTests.json($0)["agent"] == .string(supervisorKey.id)) }
            #expect(try await write(supervisor, "Lead here") == .accepted)
            #expect(try await write(second, "and me?") == .conflict)
            // Each agent message says who wrote it.
            try await client.execute(uri: "/v1/conversations/\(conversation)/messages", method: .get, headers: RouterTests.auth(rig.agentA)) { r in
                var list: [Value] = []
                if case .list(let l) = RouterTests.json(r)["messages"] { list = l }
                let written = list.filter { $0["agent"] != .null }.map { "\($0["agent"].text): \($0["text"].text)" }
                #expect(written == ["\(firstID): Oi Bia", "\(secondKey.id): Carla here", "\(supervisorKey.id): Lead here"])
            }
        }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func theAuditLogSaysWhoDidWhatInWhichRequest(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        let (supervisor, supervisorKey) = try await APIKeys.create(store: rig.store, tenant: "a", role: .supervisor, label: "lead")
        try await rig.app.test(.router) { client in
            let conversation = try await Self.handedOff(client, rig)
            try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: RouterTests.auth(rig.agentA))
            try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: RouterTests.auth(rig.agentA),
                                     body: RouterTests.body(#"{"text": "a private reply"}"#))
            try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(supervisor), body: RouterTests.body("{}"))
            try await client.execute(uri: "/v1/conversations/\(conversation)/handback", method: .post, headers: RouterTests.auth(supervisor))
            try await client.execute(uri: "/v1/conversations/\(conversation)/cancel", method: .post, headers: RouterTests.auth(supervisor))

            let a = RouterTests.auth(rig.adminA)
            let all = try await client.execute(uri: "/v1/audit", method: .get, headers: a) { r in
                #expect(r.status == .ok)
                return RouterTests.json(r)
            }
            var entries: [Value] = []
            if case .list(let l) = all["entries"] { entries = l }
            let actions = entries.map(\.["action"].text)
            #expect(Array(actions.prefix(5)) == ["conversation.cancel", "conversation.handback", "inbox.transfer", "inbox.message", "inbox.claim"],
                    "newest first: \(actions)")
            #expect(Array(actions.suffix(3)) == ["channel.create", "flow.publish", "flow.save"], "oldest last: \(actions)")
            #expect(all["total"] == .number(Double(entries.count)))
            #expect(entries.allSatisfy { $0["request"].text.count >= 8 }, "each entry names its request")
            #expect(Set(entries.map(\.["request"].text)).count == entries.count, "one request each")
            #expect(!all.jsonText.contains("a private reply"), "an agent's text is not in the audit log")
            #expect(entries[0]["actor"] == .string(supervisorKey.id) && entries[0]["subject"] == .string(conversation))

            // Filtered and paged in the database.
            try await client.execute(uri: "/v1/audit?actor=\(supervisorKey.id)", method: .get, headers: a) { r in
                #expect(RouterTests.json(r)["total"] == 3)
            }
            try await client.execute(uri: "/v1/audit?action=inbox.claim&subject=\(conversation)", method: .get, headers: a) { r in
                #expect(RouterTests.json(r)["total"] == 1)
            }
            try await client.execute(uri: "/v1/audit?limit=2&offset=1", method: .get, headers: a) { r in
                let page = RouterTests.json(r)
                #expect(page["entries"][0]["action"] == "conversation.handback" && page["limit"] == 2 && page["total"] == .number(Double(entries.count)))
            }
            try await client.execute(uri: "/v1/audit?after=2999-01-01T00:00:00Z", method: .get, headers: a) { #expect(RouterTests.json($0)["total"] == 0) }
            try await client.execute(uri: "/v1/audit?before=2999-01-01T00:00:00Z", method: .get, headers: a) {
                #expect(RouterTests.json($0)["total"] == .number(Double(entries.count)))
            }
            try await client.execute(uri: "/v1/audit?after=yesterday", method: .get, headers: a) { #expect($0.status == .badRequest) }
            // Admins only, and a tenant's own.
            try await client.execute(uri: "/v1/audit", method: .get, headers: RouterTests.auth(supervisor)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/audit", method: .get, headers: RouterTests.auth(rig.adminB)) { #expect(RouterTests.json($0)["total"] == 0) }
        }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func aRestrictedQueueIsWorkedOnlyByItsNamedAgents(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        let (named, namedKey) = try await APIKeys.create(store: rig.store, tenant: "a", role: .agent, label: "named")
        let (supervisor, _) = try await APIKeys.create(store: rig.store, tenant: "a", role: .supervisor, label: "lead")
        let person = try await PeopleTests.member(rig, "bia@a.example", role: .agent)
        try await rig.app.test(.router) { client in
            let conversation = try await Self.handedOff(client, rig)
            func restrict(_ key: String, _ agents: String) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/queues/sales", method: .put, headers: RouterTests.auth(key),
                                         body: RouterTests.body(#"{"agents": \#(agents)}"#)) { ($0.status, RouterTests.json($0)) }
            }
            func seen(_ key: String) async throws -> Value {
                try await client.execute(uri: "/v1/inbox", method: .get, headers: RouterTests.auth(key)) { RouterTests.json($0)["total"] }
            }
            #expect(try await seen(rig.agentA) == 1, "an open queue is every agent's")
            #expect(try await restrict(rig.agentA, #"["\#(namedKey.id)"]"#).0 == .forbidden, "an agent does not restrict a queue")
            #expect(try await restrict(supervisor, #"["nobody"]"#).0 == .notFound)
            #expect(try await restrict(supervisor, "[]").0 == .badRequest)
            let (status, queue) = try await restrict(supervisor, #"["\#(namedKey.id)", "\#(person.id)"]"#)
            #expect(status == .ok && queue == ["name": "sales", "agents": .list([.string(namedKey.id), .string(person.id)].sorted { $0.text < $1.text })])
            try await client.execute(uri: "/v1/queues", method: .get, headers: RouterTests.auth(rig.agentA)) { r in
                #expect(RouterTests.json(r)["items"][0]["name"] == "sales")
            }
            // Another agent neither sees, claims nor writes; the named one and a supervisor do.
            #expect(try await seen(rig.agentA) == 0)
            #expect(try await seen(named) == 1)
            #expect(try await seen(supervisor) == 1)
            try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: RouterTests.auth(rig.agentA)) {
                #expect($0.status == .forbidden)
            }
            try await client.execute(uri: "/v1/inbox/\(conversation)/messages", method: .post, headers: RouterTests.auth(rig.agentA),
                                     body: RouterTests.body(#"{"text": "hi"}"#)) { #expect($0.status == .forbidden) }
            let otherAgent = try #require(try await rig.store.apiKeys(tenant: "a").items.first { $0.label == "agent" }?.id)
            try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(supervisor),
                                     body: RouterTests.body(#"{"agent": "\#(otherAgent)"}"#)) { #expect($0.status == .conflict, "not one of the queue's agents") }
            try await client.execute(uri: "/v1/inbox/\(conversation)/claim", method: .post, headers: RouterTests.auth(named)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/inbox/\(conversation)/transfer", method: .post, headers: RouterTests.auth(supervisor),
                                     body: RouterTests.body(#"{"agent": "\#(person.id)"}"#)) { #expect($0.status == .ok) }
            // Opened again: every agent's.
            try await client.execute(uri: "/v1/queues/sales", method: .delete, headers: RouterTests.auth(supervisor)) { #expect($0.status == .noContent) }
            #expect(try await seen(rig.agentA) == 1)

            // A path parameter arrives percent-encoded: the queue is named by its decoded text, its length counted in
            // code points as /openapi.json's maxLength counts it (schemathesis found 20 astral ones refused as too long).
            let astral = String(repeating: "\u{1F600}", count: 20) + ")é"
            let encoded = try #require(astral.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
            try await client.execute(uri: "/v1/queues/\(encoded)", method: .put, headers: RouterTests.auth(supervisor),
                                     body: RouterTests.body(#"{"agents": ["\#(person.id)"]}"#)) { r in
                #expect(r.status == .ok && RouterTests.json(r)["name"].text == astral)
            }
            let tooLong = String(repeating: "a\u{301}", count: 51)  // 51 characters, 102 code points
            try await client.execute(uri: "/v1/queues/\(tooLong.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)", method: .put,
                                     headers: RouterTests.auth(supervisor), body: RouterTests.body(#"{"agents": ["\#(person.id)"]}"#)) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/v1/queues/%E2%28", method: .delete, headers: RouterTests.auth(supervisor)) {
                #expect($0.status == .badRequest, "not UTF-8")
            }
            try await client.execute(uri: "/v1/queues/\(encoded)", method: .delete, headers: RouterTests.auth(supervisor)) { #expect($0.status == .noContent) }
        }
        let actions = try await rig.store.auditLog(tenant: "a").map(\.action)
        #expect(actions.contains("queue.restrict") && actions.contains("queue.open"))
        await rig.store.close()
    }
}
