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

/// Changing a channel after it exists: an edit names only what changes and keeps the other secrets; a rotation gives
/// an `api` channel a new signing secret while the old one still signs for a day.
@Suite struct ChannelRoutesTests {
    /// The `v1` values of a `Flowline-Signature` header, and whether one of them is `secret`'s over `t.body`.
    static func signs(_ header: String, _ body: String, with secret: String) -> Bool {
        let parts = header.split(separator: ",").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
        guard let time = parts.first(where: { $0[0] == "t" })?[1] else { return false }
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(time).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        let hex = mac.map { String(format: "%02x", $0) }.joined()
        return parts.contains { $0[0] == "v1" && $0[1] == hex }
    }

    static func v1Count(_ header: String) -> Int { header.split(separator: ",").filter { $0.hasPrefix("v1=") }.count }

    @Test(arguments: Backend.available)
    func aRotatedSecretSignsBesideTheNewOneForADay(_ backend: Backend) async throws {
        let receiver = APIChannelConnectorTests.Receiver()
        let clock = APIChannelConnectorTests.Clock()
        let rig = try await RouterTests.Rig(backend: backend, clock: { clock.now })
        try await receiver.app.test(.live) { hook in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                let channel = try await APIChannelConnectorTests.start(rig, client, callback: "http://127.0.0.1:\(hook.port!)/hook")
                let id = channel["id"].text, first = channel["signing_secret"].text
                try await rig.engine.drain()
                let before = try #require(receiver.recorded.last)
                let header0 = try #require(before.headers[HTTPField.Name("Flowline-Signature")!])
                #expect(Self.v1Count(header0) == 1 && Self.signs(header0, before.body, with: first))

                // Only an admin of the channel's tenant rotates it.
                try await client.execute(uri: "/v1/channels/\(id)/rotate", method: .post, headers: RouterTests.auth(rig.agentA)) { #expect($0.status == .forbidden) }
                try await client.execute(uri: "/v1/channels/\(id)/rotate", method: .post, headers: RouterTests.auth(rig.adminB)) { #expect($0.status == .notFound) }
                let rotated = try await client.execute(uri: "/v1/channels/\(id)/rotate", method: .post, headers: a) { r in
                    #expect(r.status == .ok)
                    return RouterTests.json(r)
                }
                let second = rotated["signing_secret"].text
                #expect(second.hasPrefix("whsec_") && second != first, "a new secret, shown once")
                #expect(rotated["previous_secret_signs_until"] == .string(clock.now.adding(seconds: 86_400).iso8601))
                try await client.execute(uri: "/v1/channels", method: .get, headers: a) { r in
                    let text = String(buffer: r.body)
                    #expect(!text.contains(first) && !text.contains(second), "secrets are never listed")
                }

                /// A contact's message, and the callback the reply to it made: its body and signature header.
                func reply(from contact: String, _ text: String, id message: String) async throws -> (body: String, header: String) {
                    try await client.execute(uri: "/v1/channels/\(id)/inbound", method: .post, headers: a,
                                             body: RouterTests.body(#"{"from": "\#(contact)", "text": "\#(text)", "id": "\#(message)"}"#)) {
                        #expect($0.status == .accepted)
                    }
                    try await rig.engine.drain()
                    let hit = try #require(receiver.recorded.last)
                    #expect(Value(json: hit.body)?["contact"] == .string(contact))
                    return (hit.body, try #require(hit.headers[HTTPField.Name("Flowline-Signature")!]))
                }

                // Within the day, a callback carries both signatures: the receiver may hold either secret.
                let during = try await reply(from: "5511", "Ana", id: "m2")
                #expect(Value(json: during.body)?["text"] == "Bye Ana")
                #expect(Self.v1Count(during.header) == 2)
                #expect(Self.signs(during.header, during.body, with: second) && Self.signs(during.header, during.body, with: first))

                // After it, only the new secret signs.
                clock.advance(seconds: 86_400)
                let after = try await reply(from: "5522", "hi", id: "m3")
                #expect(Self.v1Count(after.header) == 1 && Self.signs(after.header, after.body, with: second) && !Self.signs(after.header, after.body, with: first))
                try await client.execute(uri: "/v1/channels", method: .get, headers: a) { r in
                    #expect(RouterTests.json(r)["channels"][0]["previous_secret_signs_until"] == .null)
                }
            }
        }
        #expect(try await rig.store.auditLog(tenant: "a").map(\.action).contains("channel.rotate"))
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func aProvidersSecretsChangeByEditNotByRotation(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                {"kind": "whatsapp", "name": "main", "phone_number_id": "106540352242922", "verify_token": "verify-me-please",
                 "app_secret": "app-secret-0123", "access_token": "EAAG-token-xyz"}
                """)) { RouterTests.json($0) }
            let id = channel["id"].text, path = channel["webhook_path"].text
            try await client.execute(uri: "/v1/channels/\(id)/rotate", method: .post, headers: a) { r in
                #expect(r.status == .conflict)
                #expect(RouterTests.json(r)["detail"].text.contains("PATCH"))
            }

            // A new name and a new access token: the verify token and app secret are kept.
            try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: a,
                                     body: RouterTests.body(#"{"name": "sales", "access_token": "EAAG-new-token-abc"}"#)) { r in
                #expect(r.status == .ok)
                let text = String(buffer: r.body)
                #expect(RouterTests.json(r)["name"] == "sales" && RouterTests.json(r)["phone_number_id"] == "106540352242922")
                #expect(!text.contains("EAAG") && !text.contains("verify-me") && !text.contains("app-secret"), "secrets are write-only")
            }
            let handshake = path + "?hub.mode=subscribe&hub.verify_token=verify-me-please&hub.challenge=42"
            try await client.execute(uri: handshake, method: .get) { #expect($0.status == .ok, "the verify token was kept") }
            let body = WebhookRoutesTests.notification(#"{"from": "16505551234", "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "hi"}}"#)
            try await client.execute(uri: path, method: .post, headers: WebhookRoutesTests.signed(body), body: RouterTests.body(body)) {
                #expect($0.status == .ok, "the app secret was kept")
            }
            let stored = try #require(try await rig.store.channel(id: id, tenant: "a"))
            #expect(try stored.credentials(RouterTests.secrets)["access_token"] == "EAAG-new-token-abc")
            #expect(stored.sealedSecret?.contains("EAAG") == false, "sealed at rest")

            // Meta resets the app secret: the old one no longer proves a notification, the new one does.
            try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: a,
                                     body: RouterTests.body(#"{"app_secret": "app-secret-4567"}"#)) { #expect($0.status == .ok) }
            let next = WebhookRoutesTests.notification(#"{"from": "16505551234", "id": "wamid.2", "timestamp": "2", "type": "text", "text": {"body": "again"}}"#)
            try await client.execute(uri: path, method: .post, headers: WebhookRoutesTests.signed(next), body: RouterTests.body(next)) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: path, method: .post, headers: WebhookRoutesTests.signed(next, secret: "app-secret-4567"), body: RouterTests.body(next)) {
                #expect($0.status == .ok)
            }

            // What an edit may not do, each a clear error that changes nothing: a malformed body is a 400; what the
            // channel's kind rules out (another kind's field, removing a required one) a 409.
            for (bad, status) in [(#"{"kind": "stripe"}"#, HTTPResponse.Status.badRequest), (#"{"verify_token": null}"#, .conflict),
                                  (#"{"graph_url": "ftp://graph"}"#, .badRequest), ("{}", .badRequest), (#"{"webhook_secret": "x12345678"}"#, .conflict),
                                  (#"{"secret": "0123456789abcdef"}"#, .conflict), (#"{"colour": "red"}"#, .badRequest),
                                  (#"{"app_secret": "short"}"#, .badRequest), (#"{"name": ""}"#, .badRequest), ("[1]", .badRequest)] {
                try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: a, body: RouterTests.body(bad)) { r in
                    #expect(r.status == status, "\(bad)")
                    #expect(!String(buffer: r.body).contains("short"), "a refused secret is not echoed")
                }
            }
            #expect(try await rig.store.channel(id: id, tenant: "a")?.name == "sales")

            // Two edits at once: the one made from what the other replaced is refused, not merged over it.
            let read = try #require(try await rig.store.channel(id: id, tenant: "a"))
            var first = read, second = read
            first.config = ["phone_number_id": "106540352242922", "graph_url": "https://graph.example"]
            second.name = "late"
            #expect(try await rig.store.updateChannel(first, over: read))
            #expect(try await rig.store.updateChannel(second, over: read) == false)
            #expect(try await rig.store.channel(id: id, tenant: "a")?.config["graph_url"] == "https://graph.example")
            try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: RouterTests.auth(rig.agentA),
                                     body: RouterTests.body(#"{"name": "x"}"#)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: RouterTests.auth(rig.adminB),
                                     body: RouterTests.body(#"{"name": "x"}"#)) { #expect($0.status == .notFound) }
        }
        #expect(try await rig.store.auditLog(tenant: "a").map(\.action).filter { $0 == "channel.update" }.count == 2)
        await rig.store.close()
    }

    @Test func anAPIChannelGivenACallbackLaterGetsASecretOnce() async throws {
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
            #expect(channel["signed"] == false && channel["signing_secret"] == .null)
            let id = channel["id"].text
            try await client.execute(uri: "/v1/channels/\(id)/rotate", method: .post, headers: a) { #expect($0.status == .conflict, "nothing to sign yet") }
            let edited = try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: a,
                                                  body: RouterTests.body(#"{"callback_url": "https://platform.example/hook"}"#)) { RouterTests.json($0) }
            #expect(edited["callback_url"] == "https://platform.example/hook" && edited["signed"] == true)
            #expect(edited["signing_secret"].text.hasPrefix("whsec_"))
            let again = try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: a,
                                                 body: RouterTests.body(#"{"name": "website"}"#)) { RouterTests.json($0) }
            #expect(again["signing_secret"] == .null, "shown once")
            let own = try await client.execute(uri: "/v1/channels/\(id)", method: .patch, headers: a,
                                               body: RouterTests.body(#"{"secret": "a-secret-of-our-own-choosing"}"#)) { RouterTests.json($0) }
            #expect(own["signing_secret"] == .null && own["signed"] == true)
            #expect(try await rig.store.channel(id: id, tenant: "a")?.openSecret(RouterTests.secrets) == "a-secret-of-our-own-choosing")
        }
        await rig.store.close()
    }
}
