import Crypto
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

/// A flow's webhook trigger: `POST /hooks/{token}` starts the flow for the contact the posted JSON names, with the
/// variables it maps; a forged, rotated or deleted token is refused, and so is a signed hook's unsigned request.
@Suite struct HookTests {
    static let shipped = """
        flow: shipped
        trigger:
          channel: api
          webhook:
            address: customer.phone
            name: customer.name
            variables: { order: order.id, carrier: order.shipping.0.carrier }
        variables: { order: number, carrier: string }
        start: hello
        blocks:
          hello:
            text: "{{ contact.name ?? 'Hi' }}: order {{ order }} is on its way with {{ carrier ?? 'us' }}"
        """

    static func post(_ client: some TestClientProtocol, _ path: String, _ body: String, headers: HTTPFields = [:]) async throws
        -> (status: HTTPResponse.Status, body: Value, replayed: Bool)
    {
        try await client.execute(uri: path, method: .post, headers: headers, body: RouterTests.body(body)) {
            ($0.status, RouterTests.json($0), $0.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
        }
    }

    static func signature(_ body: String, _ secret: String) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    @Test(arguments: Backend.available)
    func aPostedJSONStartsTheFlowForTheContactItNames(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await ContactsTests.channel(client, rig.adminA)
            try await StartTests.publish(client, rig.adminA, "shipped", Self.shipped)
            try await StartTests.publish(client, rig.adminA, "remind", StartTests.reminder)
            let hookBody = #"{"channel": "\#(channel)"}"#
            #expect(try await Self.post(client, "/v1/flows/remind/hook", hookBody, headers: a).body["code"] == "no_webhook_trigger")
            #expect(try await Self.post(client, "/v1/flows/shipped/hook", hookBody, headers: RouterTests.auth(rig.agentA)).status == .forbidden)
            #expect(try await Self.post(client, "/v1/flows/shipped/hook", #"{"channel": "ch_none"}"#, headers: a).status == .notFound)

            let made = try await Self.post(client, "/v1/flows/shipped/hook", hookBody, headers: a)
            #expect(made.status == .created && made.body["signed"] == false, "\(made.body)")
            let path = made.body["path"].text
            #expect(path == "/hooks/" + made.body["token"].text && path.count >= 50)
            try await client.execute(uri: "/v1/flows/shipped/hook", method: .get, headers: a) { r in
                let view = RouterTests.json(r)
                #expect(view["channel"].text == channel && view["token"] == .null, "the token is shown once, never again")
            }
            try await client.execute(uri: "/v1/flows/shipped/hook", method: .get, headers: RouterTests.auth(rig.adminB)) { #expect($0.status == .notFound) }

            // The body's paths fill the contact and the variables; what is absent takes the flow's default.
            let order = #"{"customer": {"phone": "5511900000042", "name": "Ana"}, "order": {"id": 42, "shipping": [{"carrier": "Correios"}]}}"#
            let started = try await Self.post(client, path, order, headers: [HTTPField.Name("Idempotency-Key")!: "order-42-shipped"])
            #expect(started.status == .created && started.body["flow"] == "shipped", "\(started.body)")
            try await rig.engine.drain()
            #expect(try await ContactsTests.lastMessage(rig.store, to: "5511900000042") == "Ana: order 42 is on its way with Correios")
            #expect(try await rig.store.contact(tenant: "a", channel: channel, address: "5511900000042")?.name == "Ana", "a new contact gets the name")
            let again = try await Self.post(client, path, order, headers: [HTTPField.Name("Idempotency-Key")!: "order-42-shipped"])
            #expect(again.status == .created && again.replayed && again.body == started.body, "a provider's retry starts nothing new")
            let bare = try await Self.post(client, path, #"{"customer": {"phone": 5511900000043}, "order": {"id": 43}}"#)
            #expect(bare.status == .created)
            try await rig.engine.drain()
            #expect(try await ContactsTests.lastMessage(rig.store, to: "5511900000043") == "Hi: order 43 is on its way with us")
            // The channel's profile name fills a record that has none, and does not replace one it has.
            for (from, name) in [("5511900000042", "Ana Maria"), ("5511900000043", "Bia")] {
                #expect(try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a, body: RouterTests.body(
                    #"{"from": "\#(from)", "text": "ok", "id": "in-\#(from)", "name": "\#(name)"}"#)) { $0.status } == .accepted)
            }
            #expect(try await rig.store.contact(tenant: "a", channel: channel, address: "5511900000042")?.name == "Ana")
            #expect(try await rig.store.contact(tenant: "a", channel: channel, address: "5511900000043")?.name == "Bia")

            // Refused: a body without the address, one that is not an object, a forged token.
            #expect(try await Self.post(client, path, #"{"customer": {}}"#).status == .badRequest)
            #expect(try await Self.post(client, path, #"[1, 2]"#).status == .badRequest)
            #expect(try await Self.post(client, "/hooks/fh_" + String(repeating: "0", count: 64), order).status == .notFound)
            #expect(try await Self.post(client, path + "x", order).status == .notFound)

            // Rotated: the old token stops working at once; the new one starts the flow. Deleted: neither.
            let rotated = try await Self.post(client, "/v1/flows/shipped/hook", #"{"channel": "\#(channel)", "signed": true}"#, headers: a)
            #expect(rotated.status == .created && rotated.body["signed"] == true)
            #expect(try await Self.post(client, path, order).status == .notFound, "the old token is gone")
            let signedPath = rotated.body["path"].text, secret = rotated.body["signing_secret"].text
            #expect(secret.hasPrefix("fhs_"))
            let next = #"{"customer": {"phone": "5511900000044"}, "order": {"id": 44}}"#
            #expect(try await Self.post(client, signedPath, next).status == .unauthorized, "unsigned")
            #expect(try await Self.post(client, signedPath, next, headers: [HookRoutes.signatureHeader: Self.signature(next + " ", secret)]).status
                    == .unauthorized, "signed over other bytes")
            #expect(try await Self.post(client, signedPath, next, headers: [HookRoutes.signatureHeader: Self.signature(next, secret)]).status == .created)
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: "5511900000044").count == 1)
            try await client.execute(uri: "/v1/flows/shipped/hook", method: .delete, headers: a) { #expect($0.status == .noContent) }
            #expect(try await Self.post(client, signedPath, next, headers: [HookRoutes.signatureHeader: Self.signature(next, secret)]).status == .notFound)
        }
        let actions = try await rig.store.auditLog(tenant: "a").map(\.action)
        #expect(actions.filter { $0.hasPrefix("flow.hook") }.sorted() == ["flow.hook", "flow.hook", "flow.hook.delete"])
        await rig.store.close()
    }
}
