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

/// `POST /v1/events/{name}`: a named event resumes the conversation waiting for it, or starts the flow whose
/// `trigger.event` names it for the contact it names.
@Suite struct EventTriggerTests {
    static let paid = """
        flow: paid
        trigger:
          channel: api
          event: { name: order.paid, variables: { total: order.total, items: order.items } }
        variables: { total: number, items: { type: number, default: 0 } }
        start: thanks
        blocks:
          thanks:
            text: "Thanks: {{ total }} for {{ items }} items"
        """

    static let shipping = """
        flow: shipping
        trigger: { channel: api }
        start: waiting
        blocks:
          waiting:
            wait_for: { event: order.shipped, match: conversation.id, timeout: 1d, on_timeout: late }
            save: shipment
            next: shipped
          shipped:
            text: "Shipped by {{ shipment.carrier }}"
          late:
            text: "Still waiting"
        """

    static func post(_ client: some TestClientProtocol, _ key: String, _ uri: String, _ body: String,
                     headers extra: HTTPFields = [:]) async throws -> (status: HTTPResponse.Status, body: Value, replayed: Bool) {
        var headers = RouterTests.auth(key)
        headers.append(contentsOf: extra)
        return try await client.execute(uri: uri, method: .post, headers: headers, body: RouterTests.body(body)) {
            ($0.status, RouterTests.json($0), $0.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
        }
    }

    static func texts(_ store: SQLStore, _ conversation: String) async throws -> [String] {
        try await store.messages(conversation: conversation, tenant: "a").filter { $0.direction == .outbound }.map(\.text)
    }

    @Test(arguments: Backend.available)
    func anEventStartsItsFlowOrResumesTheConversationWaitingForIt(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let channel = try await ContactsTests.channel(client, rig.adminA)
            try await StartTests.publish(client, rig.adminA, "paid", Self.paid)
            try await StartTests.publish(client, rig.adminA, "shipping", Self.shipping)
            #expect(try await rig.store.publishedFlows(tenant: "a").first { $0.name == "paid" }?.catchAll == false)

            // order.paid: nothing waits, so the flow that declares it starts for the contact, its variables from data.
            let body = #"{"contact": {"channel": "\#(channel)", "address": "5511900000001"}, "data": {"order": {"total": 42, "items": 3}}}"#
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "order-17-paid"]
            let first = try await Self.post(client, rig.adminA, "/v1/events/order.paid", body, headers: key)
            #expect(first.status == .created && first.body["flow"] == "paid", "\(first.body)")
            let conversation = first.body["conversation"].text
            try await rig.engine.drain()
            #expect(try await Self.texts(rig.store, conversation) == ["Thanks: 42 for 3 items"])
            // The sender's retry starts nothing new.
            let again = try await Self.post(client, rig.adminA, "/v1/events/order.paid", body, headers: key)
            #expect(again.status == .created && again.replayed && again.body["conversation"].text == conversation)

            // order.shipped with a key: the conversation waiting on it goes on with the data.
            let waiting = try await Self.post(client, rig.adminA, "/v1/flows/shipping/start",
                                              #"{"contact": {"channel": "\#(channel)", "address": "5511900000002"}}"#)
            #expect(waiting.status == .created)
            try await rig.engine.drain()
            let id = waiting.body["conversation"].text
            // The wrong key reaches nobody, and no flow starts on order.shipped.
            let wrong = try await Self.post(client, rig.adminA, "/v1/events/order.shipped", #"{"key": "someone-else", "data": {"carrier": "X"}}"#)
            #expect(wrong.status == .notFound && wrong.body["code"] == "no_listener", "\(wrong.body)")
            let resumed = try await Self.post(client, rig.adminA, "/v1/events/order.shipped", #"{"key": "\#(id)", "data": {"carrier": "DHL"}}"#)
            #expect(resumed.status == .accepted && resumed.body["resumed"] == true, "\(resumed.body)")
            try await rig.engine.drain()
            #expect(try await Self.texts(rig.store, id) == ["Shipped by DHL"])

            // What an event must be.
            for (uri, body, status) in [
                ("/v1/events/order.paid", #"{"data": {}}"#, HTTPResponse.Status.badRequest),            // no contact to start for
                ("/v1/events/order.paid", #"{"contact": {"channel": "\#(channel)", "address": "1"}, "data": []}"#, .badRequest),
                ("/v1/events/order.paid", #"{"contact": {"id": "ct_none"}}"#, .notFound),
                ("/v1/events/order.paid", #"{"surprise": 1}"#, .badRequest),
                ("/v1/events/order..paid", #"{}"#, .badRequest),
                ("/v1/events/order.refunded", #"{"contact": {"channel": "\#(channel)", "address": "1"}}"#, .notFound),
            ] {
                let r = try await Self.post(client, rig.adminA, uri, body)
                #expect(r.status == status, "\(uri) \(body): \(r.body)")
            }
            // An agent may not post events; another tenant has no flow that listens.
            #expect(try await Self.post(client, rig.agentA, "/v1/events/order.paid", body).status == .forbidden)
            #expect(try await Self.post(client, rig.adminB, "/v1/events/order.paid", #"{"contact": {"channel": "ch_x", "address": "1"}}"#).status == .notFound)
        }
    }
}
