import Connectors
import FlowEngine
import FlowVM
import Hummingbird
import HummingbirdTesting
import FlowlineTestKit
import Testing

/// The sender against a Graph API fake that refuses what Meta refuses: messages within WhatsApp's limits go out,
/// each with its outbox key; what breaks a limit, a rate limit answered with HTTP 400, a 500 and a hang are each
/// decided as the Graph's error table says.
@Suite struct WhatsAppContractTests {
    static func context(_ key: String, deadline: Duration = .seconds(10)) -> ConnectorContext {
        var c = ConnectorContext(tenant: "t1", conversation: "c1", idempotencyKey: key, attempt: 1)
        c.deadline = .now + deadline
        return c
    }

    static func rows(_ n: Int, title: Int = 24, description: Int = 72) -> Value {
        .list((0..<n).map { i in
            ["id": .string("row-\(i)"), "title": .string(String(repeating: "t", count: title - 1) + "\(i % 10)"),
             "description": .string(String(repeating: "d", count: description))]
        })
    }

    @Test func messagesAtWhatsAppsLimitsGoOutAndOneBeyondIsRefusedForGood() async throws {
        let graph = FakeGraphAPI(token: "EAAG-contract")
        try await graph.app.test(.live) { peer in
            let api = WhatsAppCloudAPI(phoneNumberID: graph.phoneNumberID, accessToken: "EAAG-contract", graphURL: "http://127.0.0.1:\(peer.port!)")
            let ana = WhatsAppRecipient(contact: "5511999990000")
            let atLimits: [Value] = [
                ["text": .string(String(repeating: "x", count: 4096))],
                ["text": .string(String(repeating: "b", count: 1024)), "buttons": ["Sim", "Não", .string(String(repeating: "m", count: 20))]],
                ["text": "Escolha", "list": ["button": .string(String(repeating: "v", count: 20)), "rows": Self.rows(10)]],
            ]
            for (i, message) in atLimits.enumerated() {
                let sent = try await api.send(to: ana, message: message, context: Self.context("c1:\(i)"))
                #expect(sent["id"].text.hasPrefix("wamid."), "message \(i)")
            }
            #expect(graph.messages.map { $0["biz_opaque_callback_data"].text } == ["c1:0", "c1:1", "c1:2"], "each send carries its outbox key")

            let beyond: [(String, Value)] = [
                ("a text of 4,097", ["text": .string(String(repeating: "x", count: 4097))]),
                ("a button body of 1,025", ["text": .string(String(repeating: "b", count: 1025)), "buttons": ["Sim"]]),
                ("a button title of 21", ["text": "ok?", "buttons": [.string(String(repeating: "m", count: 21))]]),
                ("two equal buttons", ["text": "ok?", "buttons": ["Sim", "Sim"]]),
                ("11 rows", ["text": "Escolha", "list": ["button": "Ver", "rows": Self.rows(11)]]),
                ("a row title of 25", ["text": "Escolha", "list": ["button": "Ver", "rows": Self.rows(2, title: 25)]]),
                ("a row description of 73", ["text": "Escolha", "list": ["button": "Ver", "rows": Self.rows(2, description: 73)]]),
                ("a list button of 21", ["text": "Escolha", "list": ["button": .string(String(repeating: "v", count: 21)), "rows": Self.rows(2)]]),
            ]
            for (what, message) in beyond {
                do {
                    _ = try await api.send(to: ana, message: message, context: Self.context("c1:x"))
                    Issue.record("\(what) must be refused")
                } catch let e as ConnectorError {
                    #expect(!e.retryable, "\(what): the same message would be refused again")
                    #expect(e.code == (what.hasPrefix("a text") ? "whatsapp_100" : "whatsapp_131009"), "\(what): \(e.code)")
                }
            }
            #expect(graph.messages.count == 3)
        }
    }

    @Test func aRateLimitWithHTTP400AFiveHundredAndAHangAreRetried() async throws {
        let graph = FakeGraphAPI(token: "EAAG-contract")
        try await graph.app.test(.live) { peer in
            let api = WhatsAppCloudAPI(phoneNumberID: graph.phoneNumberID, accessToken: "EAAG-contract", graphURL: "http://127.0.0.1:\(peer.port!)")
            do {
                _ = try await api.send(to: WhatsAppRecipient(contact: FakeGraphAPI.rateLimited), message: ["text": "oi"], context: Self.context("k1"))
                Issue.record("a rate-limited number must fail")
            } catch let e as ConnectorError {
                #expect(e.code == "whatsapp_130429" && e.retryable, "decided by the code, though the status is 400")
            }
            graph.mode.withLock { $0 = .failing }
            do {
                _ = try await api.send(to: WhatsAppRecipient(contact: "5511999990000"), message: ["text": "oi"], context: Self.context("k2"))
                Issue.record("a failing Graph must fail the send")
            } catch let e as ConnectorError {
                #expect(e.code == "whatsapp_131000" && e.retryable)
            }
            graph.mode.withLock { $0 = .hanging }
            let started = ContinuousClock.now
            do {
                _ = try await api.send(to: WhatsAppRecipient(contact: "5511999990000"), message: ["text": "oi"], context: Self.context("k3", deadline: .milliseconds(500)))
                Issue.record("a hanging Graph must fail the send")
            } catch let e as ConnectorError {
                #expect(e.retryable, "\(e.code)")
            }
            #expect(ContinuousClock.now - started < .seconds(5))
            graph.mode.withLock { $0 = .normal }
            #expect(graph.refused.withLock { $0 } == 2)
            #expect(graph.messages.isEmpty)
        }
    }
}
