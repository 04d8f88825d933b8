import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing

/// docs/api.md's route table is the contract: every route it lists is called with a key of each role, and a role
/// below the one listed gets 403 while the one listed and those above get past authorization (the answer may be
/// 404 or 400 for the made-up ids and bodies, never 401 or 403). Routes marked `—` need no key; `platform` routes
/// take only the platform key, which every other route refuses; `session` routes are a signed-in person's own.
@Suite struct RoleTableTests {
    struct Route: CustomStringConvertible {
        var method: HTTPRequest.Method
        var path: String
        var role: String
        var description: String { "\(method) \(path) (\(role))" }
    }

    static func routes() throws -> [Route] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/api.md"), encoding: .utf8)
        let section = try #require(doc.components(separatedBy: "## Routes").dropFirst().first?.components(separatedBy: "\n## ").first)
        return section.split(separator: "\n").compactMap { line -> Route? in
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3, cells[0].hasPrefix("`"), cells[0].hasSuffix("`") else { return nil }
            let parts = cells[0].dropFirst().dropLast().split(separator: " ")
            guard parts.count == 2, let method = HTTPRequest.Method(String(parts[0])) else { return nil }
            return Route(method: method, path: String(parts[1]), role: cells[1])
        }
    }

    static let rank = ["agent": 0, "supervisor": 1, "admin": 2]

    @Test func everyRouteOfTheDocsRefusesTheRolesBelowItsOwn() async throws {
        let routes = try Self.routes()
        #expect(routes.count >= 35, "the table was read: \(routes.count) routes")
        let rig = try await RouterTests.Rig()
        let supervisor = try await APIKeys.create(store: rig.store, tenant: "a", role: .supervisor, label: "s").key
        let platform = try await APIKeys.create(store: rig.store, tenant: "_platform", role: .platform, label: "p").key
        let keys: [(role: String, key: String)] = [("agent", rig.agentA), ("supervisor", supervisor), ("admin", rig.adminA), ("platform", platform)]
        try await rig.app.test(.router) { client in
            for route in routes {
                var path = route.path.replacingOccurrences(of: "{name}", with: "nope").replacingOccurrences(of: "{id}", with: "nope")
                    .replacingOccurrences(of: "{token}", with: "nope")
                if path == "/v1/events" { path += "?timeout=1&limit=1" }  // a stream: end it at once
                // A signed-in person's own session: no key opens it, and none is needed to be refused (PeopleTests).
                if route.role == "session" {
                    for (role, key) in keys {
                        let status = try await client.execute(uri: path, method: route.method, headers: RouterTests.auth(key)) { $0.status }
                        #expect(status == .unauthorized, "\(route): a \(role) key is not a session")
                    }
                    continue
                }
                for (role, key) in keys {
                    let status = try await client.execute(uri: path, method: route.method, headers: RouterTests.auth(key), body: RouterTests.body("{}")) {
                        $0.status
                    }
                    let allowed: Bool
                    switch route.role {
                    case "—": allowed = true
                    case "platform": allowed = role == "platform"
                    default: allowed = role != "platform" && Self.rank[role, default: -1] >= Self.rank[route.role, default: 99]
                    }
                    if allowed {
                        #expect(status != .forbidden && status != .unauthorized, "\(route): a \(role) key got \(status.code)")
                    } else {
                        #expect(status == .forbidden, "\(route): a \(role) key got \(status.code)")
                    }
                }
                // Without a key: refused unless the route is public.
                if route.role != "—" {
                    try await client.execute(uri: path, method: route.method, body: RouterTests.body("{}")) {
                        #expect($0.status == .unauthorized, "\(route) without a key")
                    }
                }
            }
        }
        await rig.store.close()
    }
}

/// `POST /v1/flows/{name}/migrate` over HTTP: waiting conversations move to the newest version and go on there; an
/// agent may not ask.
@Suite struct MigrateRouteTests {
    static func flow(_ question: String, _ goodbye: String) -> String {
        """
        flow: migrating
        trigger: { channel: api }
        start: ask
        blocks:
          ask:
            ask: "\(question)"
            save: name
            next: bye
          bye:
            end: "\(goodbye) {{ name }}"
        """
    }

    @Test func waitingConversationsMoveToTheNewestVersion() async throws {
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/migrating", method: .put, headers: a, body: RouterTests.body(Self.flow("Name?", "Bye")))
            try await client.execute(uri: "/v1/flows/migrating/publish", method: .post, headers: a) { #expect($0.status == .created) }
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0)["id"].text }
            let conversation = try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                                        body: RouterTests.body(#"{"from": "7", "text": "hi", "id": "m1"}"#)) { RouterTests.json($0)["conversation"].text }
            try await rig.engine.drain()
            try await client.execute(uri: "/v1/flows/migrating", method: .put, headers: a, body: RouterTests.body(Self.flow("Name?", "Goodbye")))
            try await client.execute(uri: "/v1/flows/migrating/publish", method: .post, headers: a) { #expect($0.status == .created) }

            try await client.execute(uri: "/v1/flows/migrating/migrate", method: .post, headers: RouterTests.auth(rig.agentA)) {
                #expect($0.status == .forbidden)
            }
            try await client.execute(uri: "/v1/flows/migrating/migrate", method: .post, headers: a) { r in
                #expect(r.status == .ok)
                let report = RouterTests.json(r)
                #expect(report["version"] == 2 && report["moved"] == [.string(conversation)] && report["stayed"] == .list([]), "\(report)")
            }
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: RouterTests.body(#"{"from": "7", "text": "Ana", "id": "m2"}"#))
            try await rig.engine.drain()
            try await client.execute(uri: "/v1/conversations/\(conversation)/messages", method: .get, headers: a) { r in
                let texts = RouterTests.json(r)["messages"].jsonText
                #expect(texts.contains("Goodbye Ana"), "the reply came from version 2: \(texts)")
            }
            // Nothing is left to move.
            try await client.execute(uri: "/v1/flows/migrating/migrate", method: .post, headers: a) { r in
                #expect(RouterTests.json(r)["moved"] == .list([]))
            }
        }
        await rig.store.close()
    }
}
