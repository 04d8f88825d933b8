import FlowEngine
import FlowVM
import Foundation
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing

/// Typed bodies: a field is refused by name and path, null is not "left out", and what the API answers has the
/// documented names.
@Suite struct BodiesTests {
    struct Nested: JSONRequest, Equatable {
        struct Item: Decodable, Equatable {
            var name: String
            var count: Int
        }
        var title: String
        var items: [Item]
        var note: String?
        var extra: Value?
    }

    func refusal(_ json: String) -> String? {
        do {
            _ = try ValueDecoder().decode(Nested.self, from: try Problem.json(json))
            return nil
        } catch let p as Problem {
            return p.detail
        } catch {
            return "\(error)"
        }
    }

    @Test func decodingNamesTheFieldItRefuses() throws {
        let ok = try ValueDecoder().decode(Nested.self, from: try Problem.json(#"{"title": "t", "items": [{"name": "a", "count": 2}], "extra": {"k": [1, null]}}"#))
        #expect(ok == Nested(title: "t", items: [.init(name: "a", count: 2)], note: nil, extra: ["k": [1, .null]]))
        #expect(refusal(#"{"items": []}"#) == "title is required")
        #expect(refusal(#"{"title": 1, "items": []}"#) == "title must be text")
        #expect(refusal(#"{"title": "t", "items": [{"name": "a", "count": 2.5}]}"#) == "items[0].count must be a whole number")
        #expect(refusal(#"{"title": "t", "items": [{"name": "a", "count": 1}, {"count": 1}]}"#) == "items[1].name is required")
        #expect(refusal(#"{"title": "t", "items": {}}"#) == "items must be a list")
        #expect(refusal(#"{"title": "t", "items": [], "note": null}"#) == "note must be text", "null is not a way to leave a field out")
        #expect(refusal(#"{"title": "t", "items": [], "extra": null}"#) == nil, "a field of any JSON takes null")
        #expect(refusal(#"{"title": "t", "title": "u", "items": []}"#)?.contains("title") == true, "a repeated key is refused before decoding")
    }

    @Test func theAPIRefusesBadFieldsByNameAndAnswersTypedBodies() async throws {
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            for (body, detail) in [(#"{}"#, "role is required"), (#"{"role": 3}"#, "role must be text"),
                                   (#"{"role": "agent", "label": null}"#, "label must be text"),
                                   (#"{"role": "platform"}"#, "role must be admin, supervisor or agent")] {
                try await client.execute(uri: "/v1/keys", method: .post, headers: a, body: RouterTests.body(body)) { r in
                    #expect(r.status == .badRequest && RouterTests.json(r)["detail"].text == detail, "\(body)")
                    #expect(r.headers[.contentType] == "application/problem+json")
                }
            }
            try await client.execute(uri: "/v1/keys", method: .post, headers: a, body: RouterTests.body(#"{"role": "agent", "label": "desk"}"#)) { r in
                #expect(r.status == .created)
                let key = RouterTests.json(r)
                #expect(key["role"] == "agent" && key["label"] == "desk" && key["key"].text.hasPrefix("fl_") && key["prefix"] != .null)
            }
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0)["id"].text }
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: RouterTests.body(#"{"from": "5511", "id": 7, "text": "hi"}"#)) { r in
                #expect(r.status == .badRequest && RouterTests.json(r)["detail"] == "id must be text")
            }
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: RouterTests.body(#"{"from": "5511", "id": "m1", "text": "hi"}"#)) { r in
                #expect(r.status == .accepted && RouterTests.json(r) == ["status": "unrouted", "detail": "no open conversation and no published flow's trigger matched"])
            }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: RouterTests.body(RouterTests.flow))
            try await client.execute(uri: "/v1/flows/hello/simulate", method: .post, headers: a,
                                     body: RouterTests.body(#"{"inputs": ["oi", 2]}"#)) { r in
                #expect(r.status == .badRequest && RouterTests.json(r)["detail"] == "inputs[1] must be text")
            }
            try await client.execute(uri: "/v1/flows/hello/simulate", method: .post, headers: a,
                                     body: RouterTests.body(#"{"inputs": ["Ana"]}"#)) { r in
                let answer = RouterTests.json(r)
                #expect(r.status == .ok && answer["finished"] == false)
                var lines: [Value] = []
                if case .list(let l) = answer["transcript"] { lines = l }
                #expect(lines.contains("you: Ana"))
            }
        }
        await rig.store.close()
    }
}
