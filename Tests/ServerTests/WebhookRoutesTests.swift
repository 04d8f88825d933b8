import Crypto
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
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

    static func signed(_ body: String, secret: String = "app-secret-0123") -> HTTPFields {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return [HTTPField.Name("X-Hub-Signature-256")!: "sha256=" + mac.map { String(format: "%02x", $0) }.joined(),
                .contentType: "application/json"]
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
        try await rig.app.test(.router) { client in
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: RouterTests.auth(rig.adminA), body: RouterTests.body("""
                {"kind": "whatsapp", "name": "n", "phone_number_id": "106540352242922", "verify_token": "verify-me-please", "app_secret": "app-secret-0123"}
                """)) { RouterTests.json($0) }
            let path = channel["webhook_path"].text
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
        }
        #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: nil).isEmpty)
        await rig.store.close()
    }

    @Test func repliesGoOutThroughTheCloudAPIAndGraphErrorsAreDecidedByCode() async throws {
        let graph = FakeGraphAPI(token: "EAAG-token-xyz")
        let rig = try await RouterTests.Rig()
        try await graph.app.test(.live) { fake in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/wa-hello", method: .put, headers: a, body: RouterTests.body(Self.flow))
                try await client.execute(uri: "/v1/flows/wa-hello/publish", method: .post, headers: a)
                let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                    {"kind": "whatsapp", "name": "main", "phone_number_id": "106540352242922", "verify_token": "verify-me-please",
                     "app_secret": "app-secret-0123", "access_token": "EAAG-token-xyz", "graph_url": "http://127.0.0.1:\(fake.port!)"}
                    """)) { RouterTests.json($0) }
                let path = channel["webhook_path"].text
                for (id, from) in [("wamid.1", "16505551234"), ("wamid.2", "window-closed")] {
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
                #expect(dead.count == 1 && dead[0].lastError?.contains("whatsapp_131047") == true)
                let closed = try await rig.store.conversations(tenant: "a", status: .failed, contact: "window-closed")
                #expect(closed.first?.failure?.contains("24-hour") == true)
            }
        }
        await rig.store.close()
    }
}
